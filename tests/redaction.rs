//! No token, secret access key or session token in `Debug` or error messages,
//! proven with marker secrets. (Tracing output: `tests/redaction_tracing.rs`.)

mod support;

use std::time::Duration;

use support::markers::{assert_clean, at, forbidden, marker_credentials, signer};

#[test]
fn debug_and_errors_hold_no_secret() {
    let credentials = marker_credentials(Some(at() + Duration::from_secs(3600)));
    let token = signer().sign(&credentials, at()).unwrap();
    let forbidden = forbidden(token.expose_secret());
    assert_clean("token Debug", &format!("{token:?} {token:#?}"), &forbidden);
    assert_clean("credentials Debug", &format!("{credentials:?}"), &forbidden);
    assert_clean("signer Debug", &format!("{:?}", signer()), &forbidden);

    let expired = marker_credentials(Some(at() - Duration::from_secs(1)));
    let err = signer().sign(&expired, at()).unwrap_err();
    assert_clean("error", &format!("{err} {err:?}"), &forbidden);
}
