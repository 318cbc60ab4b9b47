//! Helpers shared by the integration tests: the reference vectors and a token
//! parser that compares tokens the way a verifying server does.

#![allow(dead_code)] // each test binary uses its own subset

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Path of a file in `tests/data/`.
pub fn data_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

/// A JSON file from `tests/data/`.
pub fn load(name: &str) -> Value {
    let text = std::fs::read_to_string(data_path(name)).expect("test data readable");
    serde_json::from_str(&text).expect("test data is JSON")
}

/// The public reference vectors.
pub fn public_vectors() -> Vec<Value> {
    let file = load("public.json");
    let vectors = file["vectors"].as_array().expect("vectors array").clone();
    assert_eq!(vectors.len() as u64, file["meta"]["count"].as_u64().unwrap());
    vectors
}

/// The odd and invalid inputs, with what AWS's toolkit did with each.
pub fn invalid_input_cases() -> Vec<Value> {
    load("invalid_inputs.json")["cases"].as_array().expect("cases").clone()
}

/// An RFC 3339 instant.
pub fn instant(rfc3339: &str) -> SystemTime {
    OffsetDateTime::parse(rfc3339, &Rfc3339).expect("RFC 3339").into()
}

/// A string field of a JSON object, if present and not null.
pub fn opt_str<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// A token split the way a SigV4 verifier reads it.
#[derive(Debug, PartialEq, Eq)]
pub struct ParsedToken {
    pub host: String,
    pub path: String,
    /// Decoded query parameters without `X-Amz-Signature`.
    pub params: BTreeMap<String, String>,
    pub signature: String,
}

/// Parse a token (`host/path?query`), decoding the query values.
pub fn parse_token(token: &str) -> ParsedToken {
    let (location, query) = token.split_once('?').expect("token has a query");
    let slash = location.find('/').expect("token has a path");
    let (host, path) = location.split_at(slash);
    let mut params = BTreeMap::new();
    let mut signature = None;
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').expect("query pair has =");
        let v = percent_encoding::percent_decode_str(v).decode_utf8().expect("UTF-8").into_owned();
        if k == "X-Amz-Signature" {
            assert!(signature.replace(v).is_none(), "one signature");
        } else {
            assert!(params.insert(k.to_owned(), v).is_none(), "parameter {k} repeated");
        }
    }
    ParsedToken {
        host: host.to_owned(),
        path: path.to_owned(),
        params,
        signature: signature.expect("token has a signature"),
    }
}

/// Assert that `token` matches vector `v`: same host, path, decoded parameter
/// set and signature; the same string where no session token is involved.
pub fn assert_matches_vector(token: &str, v: &Value) {
    let name = v["name"].as_str().unwrap();
    let parsed = parse_token(token);
    let canonical = &v["canonical"];
    assert_eq!(parsed.host, canonical["host"].as_str().unwrap(), "{name}: host");
    assert_eq!(parsed.path, canonical["path"].as_str().unwrap(), "{name}: path");
    let expected: BTreeMap<String, String> = canonical["params"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(parsed.params, expected, "{name}: parameters");
    assert_eq!(parsed.signature, canonical["signature"].as_str().unwrap(), "{name}: signature");
    // The reference token itself must parse to the same canonical form.
    assert_eq!(parse_token(v["token"].as_str().unwrap()), parsed, "{name}: reference token");
    if v["session_token"].is_null() {
        assert_eq!(token, v["token"].as_str().unwrap(), "{name}: whole token");
    }
}
