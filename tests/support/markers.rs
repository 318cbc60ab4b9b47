//! Marker secrets and the checks that they never leak.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use elasticache_iam::TokenSigner;

pub const SECRET_MARKER: &str = "SECRETxMARKERxb7f3/aa+SECRETxMARKER";
pub const SESSION_MARKER: &str = "SESSIONxMARKERx41c9/zz+SESSIONxMARKER==";

pub fn at() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_705_322_096)
}

pub fn marker_credentials(expiry: Option<SystemTime>) -> Credentials {
    Credentials::new(
        "ASIAMARKERKEYEXAMPLE",
        SECRET_MARKER,
        Some(SESSION_MARKER.into()),
        expiry,
        "marker",
    )
}

pub fn signer() -> TokenSigner {
    TokenSigner::builder()
        .serverless_cache("my-serverless-cache")
        .user_id("iam-user-01")
        .region("us-east-1")
        .build()
        .unwrap()
}

/// Every form in which a secret could leak: as is, percent-encoded as in the
/// token, and the token and its signature themselves.
pub fn forbidden(token: &str) -> Vec<String> {
    let encode = |s: &str| {
        s.replace('/', "%2F")
            .replace('+', "%2B")
            .replace('=', "%3D")
    };
    let signature = token
        .rsplit_once("X-Amz-Signature=")
        .map(|(_, s)| s[..64].to_owned())
        .unwrap();
    vec![
        SECRET_MARKER.into(),
        SESSION_MARKER.into(),
        encode(SECRET_MARKER),
        encode(SESSION_MARKER),
        "SECRETxMARKER".into(),
        "SESSIONxMARKER".into(),
        token.into(),
        signature,
    ]
}

pub fn assert_clean(what: &str, text: &str, forbidden: &[String]) {
    for secret in forbidden {
        assert!(
            !text.contains(secret.as_str()),
            "{what} contains {secret:?}:\n{text}"
        );
    }
}
