//! Conformance with AWS's own token implementation: every reference vector in
//! `tests/data/public.json` (copied from the shared vectors) is reproduced.

mod support;

use aws_credential_types::Credentials;
use elasticache_iam::{AuthToken, TokenSigner};

const TOKEN_VALIDITY: std::time::Duration = AuthToken::VALIDITY;
use serde_json::Value;
use support::{assert_matches_vector, instant, opt_str, public_vectors};

fn signer_for(v: &Value) -> TokenSigner {
    let builder = TokenSigner::builder()
        .user_id(v["user_id"].as_str().unwrap())
        .region(v["region"].as_str().unwrap());
    let name = v["cache_name"].as_str().unwrap();
    let builder = match (v["service"].as_str().unwrap(), v["serverless"].as_bool()) {
        ("elasticache", Some(true)) => builder.serverless_cache(name),
        ("elasticache", Some(false)) => builder.replication_group(name),
        ("memorydb", None) => builder.memorydb_cluster(name),
        other => panic!("unknown vector kind {other:?}"),
    };
    builder.build().expect("vector inputs are valid")
}

fn credentials_for(v: &Value) -> Credentials {
    Credentials::new(
        v["access_key_id"].as_str().unwrap(),
        v["secret_access_key"].as_str().unwrap(),
        opt_str(v, "session_token").map(str::to_owned),
        None,
        "vectors",
    )
}

#[test]
fn every_public_vector_is_reproduced() {
    let vectors = public_vectors(); // as many as the file's meta.count says
    assert!(!vectors.is_empty());
    for v in &vectors {
        assert_eq!(v["expires_secs"].as_u64(), Some(TOKEN_VALIDITY.as_secs()));
        let signer = signer_for(v);
        let at = instant(v["timestamp"].as_str().unwrap());
        let token = signer.sign(&credentials_for(v), at).unwrap();
        assert_matches_vector(token.expose_secret(), v);
        assert_eq!(token.signed_at(), at);
        assert_eq!(token.usable_until(), at + TOKEN_VALIDITY);
    }
}

#[test]
fn normalised_names_are_what_is_signed() {
    for v in public_vectors() {
        let signer = signer_for(&v);
        let (name, user) = match v["service"].as_str().unwrap() {
            "elasticache" => (
                v["normalized_cache_name"].as_str().unwrap(),
                v["normalized_user_id"].as_str().unwrap(),
            ),
            _ => (
                v["cache_name"].as_str().unwrap(),
                v["user_id"].as_str().unwrap(),
            ),
        };
        assert_eq!(signer.target().name(), name, "{}", v["name"]);
        assert_eq!(signer.user_id().as_str(), user, "{}", v["name"]);
        assert_eq!(signer.target().service(), v["service"].as_str().unwrap());
    }
}

/// The comparison itself must be able to fail: a token from another instant,
/// or another set of credentials, does not match the vector.
#[test]
fn a_wrong_token_does_not_match() {
    let v = &public_vectors()[0];
    let at = instant(v["timestamp"].as_str().unwrap()) + std::time::Duration::from_secs(1);
    let token = signer_for(v).sign(&credentials_for(v), at).unwrap();
    let outcome = std::panic::catch_unwind(|| assert_matches_vector(token.expose_secret(), v));
    assert!(outcome.is_err());
}
