//! Helpers shared by the integration tests: the reference vectors and a token
//! parser that compares tokens the way a verifying server does.

#![allow(dead_code)] // each test binary uses its own subset

pub mod capture;
pub mod markers;
pub mod pools;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// An example's binary, built (or found up to date) by cargo first, so that
/// a test never runs a binary left over from older sources.
pub fn example(name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = dir.join("examples").join(name);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !built.iter().any(|b| b == name) {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--all-features", "--example", name])
            .status()
            .unwrap();
        assert!(status.success(), "cargo build --example {name}");
        built.push(name.to_owned());
    }
    path
}

/// Path of a file in `tests/data/`.
pub fn data_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
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
    assert_eq!(
        vectors.len() as u64,
        file["meta"]["count"].as_u64().unwrap()
    );
    vectors
}

/// The odd and invalid inputs, with what AWS's toolkit did with each.
pub fn invalid_input_cases() -> Vec<Value> {
    load("invalid_inputs.json")["cases"]
        .as_array()
        .expect("cases")
        .clone()
}

/// An RFC 3339 instant.
pub fn instant(rfc3339: &str) -> SystemTime {
    OffsetDateTime::parse(rfc3339, &Rfc3339)
        .expect("RFC 3339")
        .into()
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
        let v = percent_encoding::percent_decode_str(v)
            .decode_utf8()
            .expect("UTF-8")
            .into_owned();
        if k == "X-Amz-Signature" {
            assert!(signature.replace(v).is_none(), "one signature");
        } else {
            assert!(
                params.insert(k.to_owned(), v).is_none(),
                "parameter {k} repeated"
            );
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
    assert_eq!(
        parsed.host,
        canonical["host"].as_str().unwrap(),
        "{name}: host"
    );
    assert_eq!(
        parsed.path,
        canonical["path"].as_str().unwrap(),
        "{name}: path"
    );
    let expected: BTreeMap<String, String> = canonical["params"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(parsed.params, expected, "{name}: parameters");
    assert_eq!(
        parsed.signature,
        canonical["signature"].as_str().unwrap(),
        "{name}: signature"
    );
    // The reference token itself must parse to the same canonical form.
    assert_eq!(
        parse_token(v["token"].as_str().unwrap()),
        parsed,
        "{name}: reference token"
    );
    if v["session_token"].is_null() {
        assert_eq!(token, v["token"].as_str().unwrap(), "{name}: whole token");
    }
}

/// Inputs that AWS's toolkit lets through by accident and we refuse, by the
/// case's `what`, with the parameter our error names.
pub const STRICTER_THAN_TOOLKIT: &[(&str, &str)] = &[
    (
        "KELVIN SIGN U+212A, which str.lower() maps to ASCII 'k'",
        "serverless_cache",
    ),
    (
        "trailing newline in cache name ('$' matches before a final \\n)",
        "serverless_cache",
    ),
    (
        "100-character cache name (no length limit in the toolkit)",
        "serverless_cache",
    ),
    (
        "KELVIN SIGN U+212A in user id (lowercases to ASCII 'k')",
        "user_id",
    ),
    (
        "trailing newline in user id ('$' matches before a final \\n)",
        "user_id",
    ),
    (
        "uppercase region (not validated, signed as given)",
        "region",
    ),
];

/// What we do with one of the toolkit's odd inputs.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Signed; the token the toolkit gives for it.
    Token(String),
    /// Refused, naming this parameter.
    Refused(&'static str),
    /// The toolkit refused for lack of credentials or region, which is the
    /// environment's business: only the CLI, which reads the environment, can
    /// show it. The library, given both, validates and signs.
    Environment { toolkit_message: String },
}

/// Our verdict on a case of `invalid_inputs.json`, derived from what the
/// toolkit did, the stricter list above, and its empty-session-token case
/// (signed as absent, as its CLI and the AWS SDKs' environment providers do).
pub fn verdict(case: &Value) -> Verdict {
    let what = case["what"].as_str().unwrap();
    if let Some((_, parameter)) = STRICTER_THAN_TOOLKIT.iter().find(|(w, _)| *w == what) {
        assert_eq!(
            case["outcome"], "accepted",
            "{what}: listed as stricter, so the toolkit accepts it"
        );
        return Verdict::Refused(parameter);
    }
    if case["outcome"] == "accepted" {
        let token = if case["input"].get("session_token").is_some_and(|t| t == "") {
            case["cli_stdout"].as_str().unwrap().trim_end().to_owned()
        } else {
            case["token"].as_str().unwrap().to_owned()
        };
        return Verdict::Token(token);
    }
    let message = case["error_message"].as_str().unwrap();
    // The toolkit's parameter names, and the builder methods that are ours.
    for (theirs, ours) in [
        ("serverless_cache_name", "serverless_cache"),
        ("replication_group_id", "replication_group"),
        ("user_id", "user_id"),
    ] {
        if message.starts_with(&format!("Invalid value for parameter '{theirs}'")) {
            return Verdict::Refused(ours);
        }
    }
    if message.starts_with("Invalid parameter combination") {
        return match opt_str(&case["input"], "serverless_cache_name") {
            Some("") => Verdict::Refused("serverless_cache"),
            _ => Verdict::Refused("target"),
        };
    }
    if message.starts_with("No AWS region found") && case["input"]["region"] == "" {
        return Verdict::Refused("region");
    }
    if message.starts_with("No AWS region found") || message.starts_with("No AWS credentials found")
    {
        return Verdict::Environment {
            toolkit_message: message.to_owned(),
        };
    }
    panic!("{what}: no verdict for toolkit error {message:?}");
}
