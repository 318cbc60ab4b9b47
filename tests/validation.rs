//! Every odd or invalid input in `tests/data/invalid_inputs.json`, through the
//! library: what AWS's toolkit refuses is refused, what it normalises gives the
//! same token, what it lets through by accident is refused.

mod support;

use aws_credential_types::Credentials;
use elasticache_iam::{ErrorKind, TokenSigner};
use serde_json::Value;
use support::{STRICTER_THAN_TOOLKIT, Verdict, instant, invalid_input_cases, opt_str, verdict};

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

fn sign_case(case: &Value) -> Result<String, elasticache_iam::Error> {
    let input = &case["input"];
    let mut builder = TokenSigner::builder();
    if let Some(name) = opt_str(input, "serverless_cache_name") {
        builder = builder.serverless_cache(name);
    }
    if let Some(id) = opt_str(input, "replication_group_id") {
        builder = builder.replication_group(id);
    }
    if let Some(user) = opt_str(input, "user_id") {
        builder = builder.user_id(user);
    }
    match input.get("region") {
        None => builder = builder.region("us-east-1"),
        Some(Value::Null) => {}
        Some(region) => builder = builder.region(region.as_str().unwrap()),
    }
    let session_token = opt_str(input, "session_token").map(str::to_owned);
    let credentials =
        Credentials::new("AKIAIOSFODNN7EXAMPLE", SECRET, session_token, None, "cases");
    let token = builder
        .build()?
        .sign(&credentials, instant("2024-01-15T12:34:56Z"))?;
    Ok(token.expose_secret().to_owned())
}

#[test]
fn every_case_gets_its_verdict() {
    let cases = invalid_input_cases();
    let mut counts = [0usize; 3];
    for case in &cases {
        let what = case["what"].as_str().unwrap();
        match (verdict(case), sign_case(case)) {
            (Verdict::Token(expected), Ok(token)) => {
                assert_eq!(token, expected, "{what}");
                counts[0] += 1;
            }
            (Verdict::Refused(parameter), Err(err)) => {
                assert_eq!(err.kind(), ErrorKind::Configuration, "{what}: {err}");
                assert_eq!(err.parameter(), Some(parameter), "{what}: {err}");
                counts[1] += 1;
            }
            (Verdict::Environment { toolkit_message }, result) => {
                // The library was given credentials and a region; its own
                // validation still applies (checked in `environment_cases`).
                assert!(
                    result.is_ok() || result.unwrap_err().parameter().is_some(),
                    "{what}: {toolkit_message}"
                );
                counts[2] += 1;
            }
            (expected, got) => panic!("{what}: expected {expected:?}, got {got:?}"),
        }
    }
    // Every case got a verdict, and each kind of verdict is exercised (with the
    // current 41 cases: 8 signed, 30 refused, 3 left to the environment).
    assert_eq!(counts.iter().sum::<usize>(), cases.len());
    assert!(
        counts.iter().all(|&n| n > 0),
        "accepted, refused, environment: {counts:?}"
    );
}

#[test]
fn environment_cases_are_validated_like_the_rest() {
    let cases = invalid_input_cases();
    let find = |what: &str| cases.iter().find(|c| c["what"] == what).unwrap();
    // Valid inputs: the library signs them (the CLI reports the missing credentials).
    assert!(sign_case(find("no credentials anywhere")).is_ok());
    // A bad user id is refused whatever else is missing.
    let err = sign_case(find("bad user id AND no credentials (which error wins)")).unwrap_err();
    assert_eq!(err.parameter(), Some("user_id"));
    // No region at all: the builder requires one.
    let err = sign_case(find(
        "no region anywhere (region=None, no AWS_REGION/AWS_DEFAULT_REGION/config)",
    ))
    .unwrap_err();
    assert_eq!(err.parameter(), Some("region"));
}

#[test]
fn the_stricter_list_names_real_cases() {
    let cases = invalid_input_cases();
    for (what, _) in STRICTER_THAN_TOOLKIT {
        assert!(cases.iter().any(|c| c["what"] == *what), "no case {what:?}");
    }
}

#[test]
fn refusals_name_the_rule_and_not_a_credential() {
    for case in invalid_input_cases() {
        if let Err(err) = sign_case(&case) {
            let text = format!("{err} {err:?}");
            assert!(
                !text.contains(SECRET) && !text.contains("AKIAIOSFODNN7EXAMPLE"),
                "{text}"
            );
            let message = err.to_string();
            let parameter = err.parameter().unwrap();
            assert!(
                message.contains(&parameter.replace('_', " ")) || message.contains(parameter),
                "{message}"
            );
            let rules = [
                "must",
                "only",
                "required",
                "expected",
                "at most",
                "exactly one",
            ];
            assert!(rules.iter().any(|rule| message.contains(rule)), "{message}");
        }
    }
}
