//! No token, secret access key or session token in tracing output at TRACE
//! level, from this crate or the SigV4 crate, proven with marker secrets.
//!
//! This binary holds a single test on purpose: tracing caches each call site's
//! interest process-wide, and a test signing concurrently without a subscriber
//! can make a scoped subscriber miss events.

mod support;

use std::time::Duration;

use support::capture::Capture;
use support::markers::{assert_clean, at, forbidden, marker_credentials, signer};

#[test]
fn tracing_output_at_trace_level_holds_no_secret() {
    let capture = Capture::default();
    let token = tracing::subscriber::with_default(capture.subscriber(), || {
        signer()
            .sign(
                &marker_credentials(Some(at() + Duration::from_secs(3600))),
                at(),
            )
            .unwrap()
    });
    let logs = capture.text();
    // The capture works at this level: our own event is there.
    assert!(logs.contains("signed IAM auth token"), "{logs}");
    // aws-sigv4 logs the canonical request, session token included, at TRACE
    // level when presigning; the signer keeps those events out.
    assert!(!logs.contains("aws_sigv4"), "{logs}");
    // The session token is really in the token: the check below is not vacuous.
    assert!(token.expose_secret().contains("SESSIONxMARKER"));
    assert_clean("tracing output", &logs, &forbidden(token.expose_secret()));
}
