//! The `elasticache-iam-token` CLI contract: the token alone on stdout; on error
//! nothing on stdout, one line on stderr, exit 2 for usage errors and 1 otherwise.
//!
//! Each run gets an isolated environment: no inherited AWS variables, profile
//! files that do not exist, and instance metadata disabled, so the real default
//! chain finds only what a test puts in the environment and never leaves the
//! machine.

mod support;

use std::process::{Command, Output};

use serde_json::Value;
use support::{
    Verdict, assert_matches_vector, invalid_input_cases, opt_str, public_vectors, verdict,
};

const KEY: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const AT: &str = "2024-01-15T12:34:56Z";

/// The CLI with an isolated environment and no credentials.
fn cli() -> Command {
    let nowhere = std::env::temp_dir().join("elasticache-iam-cli-test-no-such-dir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_elasticache-iam-token"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &nowhere)
        .env("AWS_CONFIG_FILE", nowhere.join("config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", nowhere.join("credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true");
    cmd
}

/// The CLI with the example static credentials in the environment.
fn cli_with_keys() -> Command {
    let mut cmd = cli();
    cmd.env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET);
    cmd
}

fn run(cmd: &mut Command, args: &[&str]) -> Output {
    cmd.args(args).output().expect("the CLI runs")
}

fn stdout(out: &Output) -> &str {
    std::str::from_utf8(&out.stdout).unwrap()
}

fn stderr(out: &Output) -> &str {
    std::str::from_utf8(&out.stderr).unwrap()
}

/// The token alone on stdout with a newline, nothing on stderr; returns it.
fn assert_token(out: &Output) -> &str {
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(out));
    assert_eq!(stderr(out), "");
    let text = stdout(out);
    let token = text.strip_suffix('\n').expect("newline after the token");
    assert!(!token.contains('\n') && !token.is_empty());
    token
}

/// Nothing on stdout, exactly one line on stderr, the given exit status.
fn assert_failure(out: &Output, status: i32) -> &str {
    assert_eq!(stdout(out), "", "stdout must stay empty on error");
    let err = stderr(out);
    assert_eq!(err.lines().count(), 1, "one line on stderr: {err:?}");
    assert!(err.ends_with('\n'));
    assert_eq!(out.status.code(), Some(status), "stderr: {err}");
    assert!(!err.contains(SECRET), "secret in stderr");
    err
}

#[test]
fn every_public_vector_through_the_cli() {
    for v in public_vectors() {
        let flag = match (v["service"].as_str().unwrap(), v["serverless"].as_bool()) {
            ("elasticache", Some(true)) => "--serverless-cache",
            ("elasticache", Some(false)) => "--replication-group",
            _ => "--memorydb-cluster",
        };
        let mut cmd = cli();
        cmd.env("AWS_ACCESS_KEY_ID", v["access_key_id"].as_str().unwrap())
            .env(
                "AWS_SECRET_ACCESS_KEY",
                v["secret_access_key"].as_str().unwrap(),
            );
        if let Some(token) = opt_str(&v, "session_token") {
            cmd.env("AWS_SESSION_TOKEN", token);
        }
        let out = run(
            &mut cmd,
            &[
                flag,
                v["cache_name"].as_str().unwrap(),
                "--user-id",
                v["user_id"].as_str().unwrap(),
                "--region",
                v["region"].as_str().unwrap(),
                "--signing-time",
                v["timestamp"].as_str().unwrap(),
            ],
        );
        assert_matches_vector(assert_token(&out), &v);
    }
}

/// Our arguments for the toolkit's (`--name=value` or `--name value`).
fn translate(toolkit_argv: &Value) -> Vec<String> {
    let ours = |flag: &str| match flag {
        "--serverless-cache-name" => "--serverless-cache",
        "--replication-group-id" => "--replication-group",
        "--user-id" => "--user-id",
        "--region" => "--region",
        other => panic!("unknown toolkit flag {other}"),
    };
    let mut args = toolkit_argv
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap());
    assert_eq!(args.next(), Some("generate_iam_auth_token"));
    let mut translated = Vec::new();
    while let Some(arg) = args.next() {
        match arg.split_once('=') {
            Some((flag, value)) => translated.push(format!("{}={value}", ours(flag))),
            None => {
                translated.push(ours(arg).to_owned());
                translated.push(args.next().expect("a value after the flag").to_owned());
            }
        }
    }
    translated
}

fn flag_of(parameter: &str) -> &'static str {
    match parameter {
        "serverless_cache" => "--serverless-cache",
        "replication_group" => "--replication-group",
        "user_id" => "--user-id",
        "region" => "--region",
        // clap's messages for two targets and for none both name this flag.
        "target" => "--serverless-cache",
        other => panic!("unknown parameter {other}"),
    }
}

#[test]
fn every_odd_input_through_the_cli() {
    let cases = invalid_input_cases();
    let mut checked = 0;
    for case in &cases {
        let what = case["what"].as_str().unwrap();
        let Some(argv) = case.get("cli_argv") else {
            continue; // a library-only case (provider construction)
        };
        let mut args = translate(argv);
        args.push(format!("--signing-time={AT}"));
        let has_credentials = case["api_call"].get("credentials").is_some();
        let mut cmd = if has_credentials {
            cli_with_keys()
        } else {
            cli()
        };
        if let Some(token) = opt_str(&case["input"], "session_token") {
            cmd.env("AWS_SESSION_TOKEN", token);
        }
        let out = cmd.args(&args).output().unwrap();
        match verdict(case) {
            Verdict::Token(expected) => {
                assert_eq!(assert_token(&out), expected, "{what}");
                assert_eq!(stdout(&out), case["cli_stdout"].as_str().unwrap(), "{what}");
            }
            Verdict::Refused(parameter) => {
                let err = assert_failure(&out, 2);
                assert!(err.contains(flag_of(parameter)), "{what}: {err}");
            }
            Verdict::Environment { toolkit_message } => {
                // Our flags are checked first: a bad user id is a usage error
                // even when credentials are missing too.
                let user_id = opt_str(&case["input"], "user_id").unwrap_or_default();
                let bad_flag = elasticache_iam::UserId::new(user_id).is_err();
                let err = assert_failure(&out, if bad_flag { 2 } else { 1 });
                let topic = if bad_flag {
                    "--user-id"
                } else if toolkit_message.contains("region") {
                    "no AWS region"
                } else {
                    "no AWS credentials"
                };
                assert!(err.contains(topic), "{what}: {err}");
            }
        }
        checked += 1;
    }
    assert_eq!(
        checked,
        cases.iter().filter(|c| c.get("cli_argv").is_some()).count()
    );
    assert!(checked > 0);
}

#[test]
fn refuses_two_targets_no_target_and_an_empty_user_id() {
    let err = assert_failure(
        &run(
            &mut cli_with_keys(),
            &[
                "--serverless-cache",
                "a",
                "--replication-group",
                "b",
                "--user-id",
                "u",
                "--region",
                "us-east-1",
            ],
        ),
        2,
    )
    .to_owned();
    assert!(err.contains("cannot be used with"), "{err}");
    let err = assert_failure(
        &run(
            &mut cli_with_keys(),
            &[
                "--serverless-cache",
                "a",
                "--memorydb-cluster",
                "b",
                "--user-id",
                "u",
            ],
        ),
        2,
    )
    .to_owned();
    assert!(err.contains("cannot be used with"), "{err}");
    let err = assert_failure(
        &run(
            &mut cli_with_keys(),
            &["--user-id", "u", "--region", "us-east-1"],
        ),
        2,
    )
    .to_owned();
    assert!(
        err.contains("--serverless-cache") && err.contains("--memorydb-cluster"),
        "{err}"
    );
    let err = assert_failure(
        &run(
            &mut cli_with_keys(),
            &[
                "--serverless-cache",
                "a",
                "--user-id",
                "",
                "--region",
                "us-east-1",
            ],
        ),
        2,
    )
    .to_owned();
    assert!(
        err.contains("--user-id: user id must not be empty"),
        "{err}"
    );
    let err = assert_failure(
        &run(
            &mut cli_with_keys(),
            &["--serverless-cache", "a", "--region", "us-east-1"],
        ),
        2,
    )
    .to_owned();
    assert!(err.contains("--user-id"), "{err}");
}

#[test]
fn usage_errors_exit_2() {
    let cases: &[&[&str]] = &[
        &[
            "--serverless-cache",
            "a",
            "--user-id",
            "u",
            "--signing-time",
            "yesterday",
        ],
        &[
            "--serverless-cache",
            "a",
            "--user-id",
            "u",
            "--no-such-flag",
        ],
        &[
            "--serverless-cache",
            "my.cache.abc123.serverless.use1.cache.amazonaws.com",
            "--user-id",
            "u",
        ],
        &[
            "--replication-group",
            "a",
            "--user-id",
            "u",
            "--region",
            "US-EAST-1",
        ],
    ];
    for args in cases {
        assert_failure(&run(&mut cli_with_keys(), args), 2);
    }
}

/// Several bad flags: one line naming each flag beside its own problem.
#[test]
fn every_bad_flag_is_named_at_once() {
    let args = [
        "--serverless-cache",
        "my_cache",
        "--user-id",
        "1user",
        "--region",
        "US-EAST-1",
    ];
    let out = run(&mut cli_with_keys(), &args);
    let err = assert_failure(&out, 2);
    assert!(err.contains("3 problems: "), "{err}");
    for (flag, value) in [
        ("--serverless-cache", "\"my_cache\""),
        ("--user-id", "\"1user\""),
        ("--region", "\"US-EAST-1\""),
    ] {
        let at = err.find(&format!("{flag}: ")).expect(flag);
        let next = err[at..].find(") --").map_or(err.len(), |i| at + i);
        assert!(
            err[at..next].contains(value),
            "{flag} is not next to {value}: {err}"
        );
    }
}

#[test]
fn missing_credentials_and_region_exit_1() {
    let err = assert_failure(
        &run(
            &mut cli(),
            &[
                "--serverless-cache",
                "a",
                "--user-id",
                "u",
                "--region",
                "us-east-1",
            ],
        ),
        1,
    )
    .to_owned();
    assert!(err.contains("no AWS credentials"), "{err}");
    let err = assert_failure(
        &run(
            &mut cli_with_keys(),
            &["--serverless-cache", "a", "--user-id", "u"],
        ),
        1,
    )
    .to_owned();
    assert!(err.contains("no AWS region"), "{err}");
}

#[test]
fn region_comes_from_the_default_chain_without_the_flag() {
    let args = [
        "--serverless-cache",
        "a",
        "--user-id",
        "u",
        "--signing-time",
        AT,
    ];
    let with_flag = run(
        &mut cli_with_keys(),
        &[&args[..], &["--region", "eu-west-2"]].concat(),
    );
    let from_env = run(cli_with_keys().env("AWS_REGION", "eu-west-2"), &args);
    assert_eq!(assert_token(&from_env), assert_token(&with_flag));
    assert!(assert_token(&from_env).contains("%2Feu-west-2%2Felasticache%2F"));
    // A bad region from the environment is reported, as an environment error.
    let err = assert_failure(
        &run(cli_with_keys().env("AWS_REGION", "EU-WEST-2"), &args),
        1,
    )
    .to_owned();
    assert!(err.contains("region from the AWS default chain"), "{err}");
}

#[test]
#[allow(clippy::disallowed_methods)] // compares with the real clock the CLI signs by
fn signs_as_of_now_without_signing_time() {
    let out = run(
        &mut cli_with_keys(),
        &[
            "--serverless-cache",
            "a",
            "--user-id",
            "u",
            "--region",
            "us-east-1",
        ],
    );
    let token = assert_token(&out);
    let date = support::parse_token(token).params["X-Amz-Date"].clone();
    let signed = time::PrimitiveDateTime::parse(
        &date,
        time::macros::format_description!("[year][month][day]T[hour][minute][second]Z"),
    )
    .unwrap()
    .assume_utc();
    let skew = (time::OffsetDateTime::now_utc() - signed).abs();
    assert!(skew < time::Duration::minutes(5), "signed at {date}");
}

#[test]
fn help_explains_every_flag_and_the_valkey_cli_use() {
    let out = run(&mut cli(), &["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = stdout(&out);
    for flag in [
        "--serverless-cache",
        "--replication-group",
        "--memorydb-cluster",
        "--user-id",
        "--region",
        "--signing-time",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
    assert!(help.contains("valkey-cli --tls"), "{help}");
    assert!(help.contains("--user iam-user-01"), "{help}");
    assert!(help.contains("--pass \"$(elasticache-iam-token"), "{help}");
}
