//! The example service as its users run it: the `elasticache-iam-service`
//! binary, configured only from the environment, against the local
//! ElastiCache stand-in and a real Valkey, driven over HTTP.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use elasticache_iam_service::client::{Client, metric_sum, now, round};
use elasticache_localstack::{STATIC_SECRET_ACCESS_KEY, Stack, StackConfig};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::time::Instant;

const PASSWORD_USER: (&str, &str) = ("svc-user", "marker-password-5f3a9c1e");

/// The service as a child process, with what it wrote on stderr.
struct Service {
    child: Child,
    client: Client,
    stderr: Arc<Mutex<String>>,
}

impl Service {
    /// Starts the binary with `env` only (and `PATH`), listening on a free
    /// port, and waits for its "listening on" line.
    fn start(env: &[(String, String)]) -> Service {
        let mut child = spawn(env);
        let stdout = child.stdout.take().expect("stdout piped");
        let stderr = Arc::new(Mutex::new(String::new()));
        collect(
            child.stderr.take().expect("stderr piped"),
            Arc::clone(&stderr),
        );
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(address) = line.strip_prefix("listening on ") {
                    let _ = tx.send(address.to_owned());
                }
            }
        });
        let address = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!(
                    "the service did not start: {}",
                    stderr.lock().unwrap().as_str()
                )
            });
        Service {
            child,
            client: Client::new(format!("http://{address}")),
            stderr,
        }
    }

    /// SIGTERM, as ECS and Kubernetes send it.
    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// The exit status, waiting at most `limit`, and how long it took.
    async fn exit(&mut self, limit: Duration) -> (Option<i32>, Duration) {
        let started = now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return (status.code(), started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.child.kill();
        (None, started.elapsed())
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(env: &[(String, String)]) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_elasticache-iam-service"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LISTEN_ADDR", "127.0.0.1:0")
        // Everything logged, so that the marker checks see every line.
        .env("RUST_LOG", "debug")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command.spawn().expect("the service binary starts")
}

fn collect(mut from: impl Read + Send + 'static, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(n) = from.read(&mut buffer) {
            if n == 0 {
                break;
            }
            into.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
    });
}

/// The stack's environment (IAM with its static test credentials), with
/// `extra` set over it.
fn iam_env(stack: &Stack, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = stack
        .env_vars()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    for (k, v) in extra {
        env.retain(|(key, _)| key != k);
        env.push(((*k).to_owned(), (*v).to_owned()));
    }
    env
}

/// The stack's TLS settings and its password user, without IAM.
fn password_env(stack: &Stack, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let keep = [
        "REDIS_HOST",
        "REDIS_PORT",
        "REDIS_SSL",
        "REDIS_SSL_CA_CERTS",
        "REDIS_SSL_CERTFILE",
        "REDIS_SSL_KEYFILE",
    ];
    let mut env: Vec<(String, String)> = stack
        .env_vars()
        .into_iter()
        .filter(|(k, _)| keep.contains(k))
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    env.extend(
        [
            ("USE_IAM_AUTH", "false"),
            ("REDIS_USERNAME", PASSWORD_USER.0),
            ("REDIS_PASSWORD", PASSWORD_USER.1),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    env
}

/// Short lifetimes, so that expiries can be checked.
const SHORT: &[(&str, &str)] = &[("SESSION_TTL_SECS", "2"), ("CODE_TTL_SECS", "2")];

async fn expect(
    client: &Client,
    method: Method,
    path: &str,
    body: Option<Value>,
    status: StatusCode,
) -> Value {
    client
        .expect(method, path, body, status)
        .await
        .unwrap_or_else(|failure| panic!("{failure}"))
}

/// Every route, and every documented answer, expiries included (the service
/// runs with 2-second sessions and codes).
async fn every_flow(client: &Client) {
    use Method as M;
    use StatusCode as S;
    let user = "alice-01";
    let sessions = format!("/users/{user}/sessions");

    // Sessions: log in three times, find, list, revoke one, revoke all.
    let mut ids = Vec::new();
    for device in ["phone", "laptop", "tablet"] {
        let session = expect(
            client,
            M::POST,
            &sessions,
            Some(json!({"client": device})),
            S::CREATED,
        )
        .await;
        assert_eq!(session["user"], user);
        assert_eq!(session["client"], device);
        assert_eq!(session["expires_in"], 2);
        ids.push(session["session_id"].as_str().unwrap().to_owned());
    }
    let found = expect(
        client,
        M::GET,
        &format!("{sessions}/{}", ids[1]),
        None,
        S::OK,
    )
    .await;
    assert_eq!(found["client"], "laptop");
    let mut listed: Vec<String> = serde_json::from_value(
        expect(client, M::GET, &sessions, None, S::OK).await["sessions"].clone(),
    )
    .unwrap();
    listed.sort();
    let mut all = ids.clone();
    all.sort();
    assert_eq!(listed, all);
    expect(
        client,
        M::DELETE,
        &format!("{sessions}/{}", ids[0]),
        None,
        S::NO_CONTENT,
    )
    .await;
    let gone = expect(
        client,
        M::GET,
        &format!("{sessions}/{}", ids[0]),
        None,
        S::NOT_FOUND,
    )
    .await;
    assert_eq!(gone["error"]["code"], "not_found");
    expect(
        client,
        M::DELETE,
        &format!("{sessions}/{}", ids[0]),
        None,
        S::NOT_FOUND,
    )
    .await;
    let revoked = expect(client, M::DELETE, &sessions, None, S::OK).await;
    assert_eq!(revoked["revoked"], 2);
    assert_eq!(
        expect(client, M::GET, &sessions, None, S::OK).await["sessions"],
        json!([])
    );

    // Invalid input: a JSON error naming the problem, before any key is made.
    let bad = expect(
        client,
        M::POST,
        "/users/a%7Bb%7D/sessions",
        Some(json!({})),
        S::BAD_REQUEST,
    )
    .await;
    assert_eq!(bad["error"]["code"], "invalid_request");
    assert!(
        bad["error"]["message"].as_str().unwrap().contains("user"),
        "{bad}"
    );
    let bad = expect(
        client,
        M::POST,
        &format!("/users/{user}/tokens/revoked"),
        Some(json!({"token_id": 7})),
        S::BAD_REQUEST,
    )
    .await;
    assert_eq!(bad["error"]["code"], "invalid_request");
    let huge = expect(
        client,
        M::POST,
        &format!("/users/{user}/tokens/revoked"),
        Some(json!({"token_id": "t9", "expires_in": u64::MAX})),
        S::BAD_REQUEST,
    )
    .await;
    assert_eq!(huge["error"]["code"], "invalid_request");
    let twice = expect(
        client,
        M::GET,
        &format!("/users/{user}/tokens/t1?family=a&family=b"),
        None,
        S::BAD_REQUEST,
    )
    .await;
    assert_eq!(twice["error"]["code"], "invalid_request");
    let bad = expect(client, M::PUT, &sessions, None, S::METHOD_NOT_ALLOWED).await;
    assert_eq!(bad["error"]["code"], "method_not_allowed");
    let bad = expect(client, M::GET, "/no/such/route", None, S::NOT_FOUND).await;
    assert_eq!(bad["error"]["code"], "not_found");

    // Token blacklist: one token, then a family; entries expire with them.
    let status =
        |token: &str, family: &str| format!("/users/{user}/tokens/{token}?family={family}");
    assert_eq!(
        expect(client, M::GET, &status("t1", "f1"), None, S::OK).await["status"],
        "valid"
    );
    expect(
        client,
        M::POST,
        &format!("/users/{user}/tokens/revoked"),
        Some(json!({"token_id": "t1", "expires_in": 2})),
        S::NO_CONTENT,
    )
    .await;
    assert_eq!(
        expect(client, M::GET, &status("t1", "f1"), None, S::OK).await["status"],
        "revoked_token"
    );
    assert_eq!(
        expect(client, M::GET, &status("t2", "f1"), None, S::OK).await["status"],
        "valid"
    );
    expect(
        client,
        M::POST,
        &format!("/users/{user}/families/revoked"),
        Some(json!({"family": "f1", "expires_in": 2})),
        S::NO_CONTENT,
    )
    .await;
    assert_eq!(
        expect(client, M::GET, &status("t2", "f1"), None, S::OK).await["status"],
        "revoked_family"
    );
    assert_eq!(
        expect(client, M::GET, &status("t3", "f2"), None, S::OK).await["status"],
        "valid"
    );
    assert_eq!(
        expect(
            client,
            M::GET,
            &format!("/users/{user}/tokens/t3"),
            None,
            S::OK
        )
        .await["status"],
        "valid"
    );
    let zero = expect(
        client,
        M::POST,
        &format!("/users/{user}/tokens/revoked"),
        Some(json!({"token_id": "t9", "expires_in": 0})),
        S::BAD_REQUEST,
    )
    .await;
    assert!(
        zero["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expires_in"),
        "{zero}"
    );

    // One-time codes: a wrong guess, the right code once; five wrong guesses
    // void a code.
    let codes = format!("/users/{user}/codes/login");
    let verify = format!("{codes}/verify");
    let issued = expect(client, M::POST, &codes, None, S::CREATED).await;
    assert_eq!(issued["expires_in"], 2);
    assert_eq!(issued["max_tries"], 5);
    let code = issued["code"].as_str().unwrap().to_owned();
    let wrong = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);
    let answer = expect(
        client,
        M::POST,
        &verify,
        Some(json!({"code": wrong})),
        S::UNAUTHORIZED,
    )
    .await;
    assert_eq!(answer["error"]["code"], "wrong_code");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("4 tries left"),
        "{answer}"
    );
    assert_eq!(
        expect(client, M::POST, &verify, Some(json!({"code": code})), S::OK).await["valid"],
        true
    );
    let again = expect(
        client,
        M::POST,
        &verify,
        Some(json!({"code": code})),
        S::NOT_FOUND,
    )
    .await;
    assert_eq!(again["error"]["code"], "not_found");
    let code = expect(client, M::POST, &codes, None, S::CREATED).await["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let wrong = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);
    for left in (1..=4).rev() {
        let answer = expect(
            client,
            M::POST,
            &verify,
            Some(json!({"code": wrong})),
            S::UNAUTHORIZED,
        )
        .await;
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains(&format!("{left} tries left")),
            "{answer}"
        );
    }
    let void = expect(
        client,
        M::POST,
        &verify,
        Some(json!({"code": wrong})),
        S::GONE,
    )
    .await;
    assert_eq!(void["error"]["code"], "code_voided");
    expect(
        client,
        M::POST,
        &verify,
        Some(json!({"code": code})),
        S::NOT_FOUND,
    )
    .await;

    // Expiries, all set 2 s long: a session used now and then lives on (and
    // stays listed: its use renews the index too, past the login's 2 s); one
    // left alone, the code and the blacklist entries are gone.
    let login = |device: &'static str| {
        let sessions = sessions.clone();
        async move {
            let session = expect(
                client,
                M::POST,
                &sessions,
                Some(json!({"client": device})),
                S::CREATED,
            )
            .await;
            session["session_id"].as_str().unwrap().to_owned()
        }
    };
    let used = login("phone").await;
    let left = login("laptop").await;
    let code = expect(client, M::POST, &codes, None, S::CREATED).await["code"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    expect(client, M::GET, &format!("{sessions}/{used}"), None, S::OK).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    expect(client, M::GET, &format!("{sessions}/{used}"), None, S::OK).await;
    expect(
        client,
        M::GET,
        &format!("{sessions}/{left}"),
        None,
        S::NOT_FOUND,
    )
    .await;
    assert_eq!(
        expect(client, M::GET, &sessions, None, S::OK).await["sessions"],
        json!([used])
    );
    expect(
        client,
        M::POST,
        &verify,
        Some(json!({"code": code})),
        S::NOT_FOUND,
    )
    .await;
    assert_eq!(
        expect(client, M::GET, &status("t1", "f1"), None, S::OK).await["status"],
        "valid"
    );
    assert_eq!(
        expect(client, M::GET, &status("t2", "f1"), None, S::OK).await["status"],
        "valid"
    );
    // Revoking all of the user's sessions ends the one still in use.
    let revoked = expect(client, M::DELETE, &sessions, None, S::OK).await;
    assert_eq!(revoked["revoked"], 1);
    expect(
        client,
        M::GET,
        &format!("{sessions}/{used}"),
        None,
        S::NOT_FOUND,
    )
    .await;
    assert_eq!(
        expect(client, M::GET, &sessions, None, S::OK).await["sessions"],
        json!([])
    );
}

/// Whether `log` holds something shaped like a session id (32 hex digits in
/// a row): session ids are bearer secrets, so request logs name the route's
/// template, never the path.
fn holds_a_session_id(log: &str) -> bool {
    log.as_bytes()
        .split(|b| !b.is_ascii_hexdigit())
        .any(|run| run.len() >= 32)
}

/// The health report, and that neither it nor the logs carry `secrets`.
async fn healthy(service: &Service, secrets: &[&str]) -> Value {
    let health = expect(
        &service.client,
        Method::GET,
        "/health/redis",
        None,
        StatusCode::OK,
    )
    .await;
    assert_eq!(health["ok"], true, "{health}");
    let text = health.to_string();
    for secret in secrets {
        assert!(!text.contains(secret), "a secret in the health report");
        assert!(!service.stderr().contains(secret), "a secret in the log");
    }
    health
}

/// Every flow with IAM against `config`'s stack, whose connections are of
/// `mode`; no secret in the health reports or the log, and the log names
/// routes, never session ids.
async fn iam_every_flow(config: StackConfig, mode: &str) {
    let stack = Stack::start(config).await.unwrap();
    let service = Service::start(&iam_env(&stack, SHORT));
    let health = healthy(&service, &[STATIC_SECRET_ACCESS_KEY]).await;
    assert_eq!(health["auth_mode"], "iam");
    assert_eq!(health["mode"], mode);
    every_flow(&service.client).await;
    healthy(&service, &[STATIC_SECRET_ACCESS_KEY, "X-Amz-Signature"]).await;
    let log = service.stderr();
    assert!(
        log.contains("route=\"/users/{user}/sessions/{session}\""),
        "{log}"
    );
    assert!(!holds_a_session_id(&log), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn serverless_cache_every_flow() {
    iam_every_flow(StackConfig::serverless("svc-cache"), "cluster").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn replication_group_every_flow() {
    iam_every_flow(StackConfig::replication_group("svc-group"), "standalone").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn password_and_tls_every_flow() {
    let stack = Stack::start(
        StackConfig::replication_group("svc-password")
            .password_user(PASSWORD_USER.0, PASSWORD_USER.1),
    )
    .await
    .unwrap();
    let service = Service::start(&password_env(&stack, SHORT));
    let health = healthy(&service, &[PASSWORD_USER.1]).await;
    assert_eq!(health["auth_mode"], "password");
    every_flow(&service.client).await;
    healthy(&service, &[PASSWORD_USER.1]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_every_flow() {
    let stack = Stack::start(
        StackConfig::replication_group("svc-mtls")
            .password_user(PASSWORD_USER.0, PASSWORD_USER.1)
            .require_client_cert(true),
    )
    .await
    .unwrap();
    let env = password_env(&stack, SHORT);
    assert!(
        env.iter().any(|(k, _)| k == "REDIS_SSL_CERTFILE"),
        "{env:?}"
    );

    // Without its certificate the service cannot connect: exit 1 (not a
    // configuration problem), saying why.
    let without: Vec<_> = env
        .iter()
        .filter(|(k, _)| k != "REDIS_SSL_CERTFILE" && k != "REDIS_SSL_KEYFILE")
        .cloned()
        .collect();
    let output = spawn(&without).wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("listening on"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("REDIS_SSL_CERTFILE"), "{stderr}");

    let service = Service::start(&env);
    healthy(&service, &[PASSWORD_USER.1]).await;
    every_flow(&service.client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configuration_problem_exits_2_naming_every_variable() {
    let env: Vec<(String, String)> = [
        ("USE_IAM_AUTH", "true"),
        ("REDIS_HOST", "localhost"),
        ("REDIS_PORT", "6379x"),
        ("SESSION_TTL_SECS", "soon"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let output = spawn(&env).wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for name in ["REDIS_PORT", "SESSION_TTL_SECS", "ELASTICACHE_USER_ID"] {
        assert!(stderr.contains(name), "{name} not named: {stderr}");
    }
}

/// Polls `/health/redis` every 50 ms until it answers `status`; how long
/// that took.
async fn health_turns(client: &Client, status: StatusCode, limit: Duration) -> Duration {
    let started = now();
    loop {
        if let Ok(answer) = client.call(Method::GET, "/health/redis", None).await
            && answer.status == status
        {
            assert_eq!(
                answer.body["ok"],
                status == StatusCode::OK,
                "{}",
                answer.body
            );
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "/health/redis did not answer {status} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn health_answers_503_within_2_s_of_a_failure_and_200_after_recovery() {
    let stack = Stack::start(StackConfig::replication_group("svc-health"))
        .await
        .unwrap();
    let service = Service::start(&iam_env(&stack, &[]));
    healthy(&service, &[STATIC_SECRET_ACCESS_KEY]).await;

    // The stand-in refuses every authentication, and its connections are
    // cut (as after a failover or a policy change): the service cannot
    // reconnect.
    stack.faults().reject_next_auths(u64::MAX);
    stack.drop_all_connections();
    let took = health_turns(
        &service.client,
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(2),
    )
    .await;
    println!("authentication refused: 503 after {took:?}");
    let report = service
        .client
        .call(Method::GET, "/health/redis", None)
        .await
        .unwrap();
    let text = report.body.to_string();
    assert!(!text.contains(STATIC_SECRET_ACCESS_KEY) && !text.contains("X-Amz-Signature"));
    stack.faults().reject_next_auths(0);
    let took = health_turns(&service.client, StatusCode::OK, Duration::from_secs(30)).await;
    println!("authentication accepted again: 200 after {took:?}");

    // The upstream Valkey stops.
    stack.stop_upstream().await;
    let took = health_turns(
        &service.client,
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(2),
    )
    .await;
    println!("upstream stopped: 503 after {took:?}");
    stack.start_upstream().await.unwrap();
    let took = health_turns(&service.client, StatusCode::OK, Duration::from_secs(30)).await;
    println!("upstream started: 200 after {took:?}");
    healthy(&service, &[STATIC_SECRET_ACCESS_KEY, "X-Amz-Signature"]).await;
}

/// One request's start and outcome.
struct Sent {
    at: Instant,
    answered: Option<StatusCode>,
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_load_drains_and_exits_0() {
    let stack = Stack::start(StackConfig::serverless("svc-term"))
        .await
        .unwrap();
    let mut service = Service::start(&iam_env(&stack, &[]));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..16)
        .map(|worker| {
            let (client, stop) = (service.client.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut sent = Vec::new();
                let path = format!("/users/term-{worker}/sessions");
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let at = now();
                    let answer = client
                        .call(Method::POST, &path, Some(json!({"client": "x"})))
                        .await;
                    let failed = answer.is_err();
                    sent.push(Sent {
                        at,
                        answered: answer.ok().map(|a| a.status),
                    });
                    if failed {
                        // The listener is closed: the service is going.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                sent
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let signalled = now();
    service.terminate();
    let (code, took) = service.exit(Duration::from_secs(5)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut sent = Vec::new();
    for worker in workers {
        sent.extend(worker.await.unwrap());
    }
    assert_eq!(
        code,
        Some(0),
        "exit status after SIGTERM ({took:?}): {}",
        service.stderr()
    );
    assert!(took < Duration::from_secs(5));
    let before: Vec<_> = sent.iter().filter(|s| s.at < signalled).collect();
    let answered_before = before.iter().filter(|s| s.answered.is_some()).count();
    println!(
        "exit 0 after {took:?}; {} requests before SIGTERM, all answered: {}; {} after",
        before.len(),
        answered_before,
        sent.len() - before.len()
    );
    assert!(before.len() > 100, "too little load: {}", before.len());
    // No request sent before the signal lost its answer, and every answer
    // (before or during the drain) is the right one: no cache connection
    // closed under an in-flight request.
    assert_eq!(
        answered_before,
        before.len(),
        "requests sent before SIGTERM went unanswered"
    );
    for s in &sent {
        if let Some(status) = s.answered {
            assert_eq!(status, StatusCode::CREATED);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_after_a_scaled_run_match_the_counts() {
    let stack = Stack::start(
        StackConfig::replication_group("svc-metrics").max_auth_age(Duration::from_secs(8)),
    )
    .await
    .unwrap();
    let scaled = [
        ("ELASTICACHE_TOKEN_REFRESH_INTERVAL", "2s"),
        ("ELASTICACHE_REAUTH_AFTER", "4s"),
        ("ELASTICACHE_MAX_CONNECTION_AGE", "6s"),
    ];
    let service = Service::start(&iam_env(&stack, &scaled));
    let client = service.client.clone();
    let started = now();
    let mut rounds = 0;
    let mut dropped = false;
    let mut ignore = |_| {};
    while started.elapsed() < Duration::from_secs(14) {
        rounds += 1;
        round(&client, "metrics-user", rounds, &mut ignore)
            .await
            .unwrap();
        if !dropped && started.elapsed() > Duration::from_secs(5) {
            // The connection is lost once: replaced by a successor (a
            // standalone connection; redis-rs reconnects a cluster
            // connection's nodes itself).
            stack.drop_all_connections();
            dropped = true;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let stats = stack.stats();
    println!("dropped {dropped}; stand-in: {stats:?}");
    assert_eq!(stats.forced_disconnects, 0, "{stats:?}");

    // Counters and gauges against the health report's counts: read metrics,
    // health, metrics, until nothing happened in between.
    for attempt in 0.. {
        let (_, first) = client.text("/metrics").await.unwrap();
        let health = expect(&client, Method::GET, "/health/redis", None, StatusCode::OK).await;
        let (status, text) = client.text("/metrics").await.unwrap();
        assert_eq!(status, StatusCode::OK);
        let value = |name: &str, labels: &[&str]| metric_sum(&text, name, labels);
        let names = [
            "elasticache_iam_token_rotations",
            "elasticache_iam_reauths",
            "elasticache_iam_connection_replacements",
            "elasticache_iam_connection_attempts",
        ];
        if names
            .iter()
            .any(|n| metric_sum(&first, n, &[]) != value(n, &[]))
            && attempt < 5
        {
            continue;
        }
        let counts = &health["counts"];
        println!("health counts: {counts}");
        let rotations = value("elasticache_iam_token_rotations", &[]);
        let reauths = value("elasticache_iam_reauths", &["outcome=\"ok\""]);
        let replacements = value("elasticache_iam_connection_replacements", &[]);
        println!(
            "{rounds} rounds: rotations {rotations}, reauths {reauths}, replacements {replacements}"
        );
        // 14 s of 2 s rotations (the first signing included), re-auths
        // every ~4 s, and the one connection the stand-in dropped replaced.
        assert!(rotations >= 6.0 && reauths >= 2.0, "{text}");
        let lost = value(
            "elasticache_iam_connection_replacements",
            &["reason=\"lost\""],
        );
        assert_eq!(lost, 1.0, "{text}");
        assert!(replacements >= lost);
        assert_eq!(rotations, health["token"]["rotations"].as_f64().unwrap());
        assert_eq!(reauths, counts["reauths"].as_f64().unwrap());
        assert_eq!(
            replacements,
            counts["recycles"].as_f64().unwrap() + counts["reconnects"].as_f64().unwrap()
        );
        assert_eq!(
            value("elasticache_iam_connection_attempts", &["outcome=\"ok\""]),
            counts["connections_opened"].as_f64().unwrap()
        );
        assert_eq!(
            value("db_client_connection_count", &["state=\"idle\""]),
            health["pool"]["idle"].as_f64().unwrap()
        );
        assert_eq!(
            value("db_client_connection_max", &[]),
            health["pool"]["max_size"].as_f64().unwrap()
        );
        assert!(value("elasticache_iam_token_age", &[]) < 2.5, "{text}");
        // Operation durations, labelled as OpenTelemetry names them.
        assert!(text.contains("db_client_operation_duration"), "{text}");
        assert!(text.contains("db_operation_name=\"MULTI\""), "{text}");
        assert!(text.contains("db_system_name=\"redis\""), "{text}");
        assert!(!text.contains(STATIC_SECRET_ACCESS_KEY));
        break;
    }
}
