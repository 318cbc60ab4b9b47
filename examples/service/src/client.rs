//! A client of the service's HTTP API, and one round of its flows with every
//! answer checked: what the load client runs and the tests reuse.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::time::Instant;

/// One answer: status and JSON body (`Null` when there is none).
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: StatusCode,
    /// The JSON body; `Null` when empty, a string when not JSON.
    pub body: Value,
}

/// Calls the service at `base` (`http://host:port`), timing each request.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

/// What went wrong with a request: the transport (no HTTP answer), or an
/// answer that was not the expected one.
#[derive(Debug)]
pub enum Failure {
    /// No HTTP answer (connection refused or closed, timeout).
    Transport(String),
    /// An answer, not the expected one.
    Unexpected(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Transport(why) => write!(f, "no answer: {why}"),
            Failure::Unexpected(why) => write!(f, "unexpected answer: {why}"),
        }
    }
}

/// The monotonic clock (a client measures real time).
#[allow(
    clippy::disallowed_methods,
    reason = "a load client measures real time"
)]
pub fn now() -> Instant {
    Instant::now()
}

impl Client {
    /// A client of the service at `base`, with a 10 s timeout per request.
    pub fn new(base: impl Into<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client without TLS builds");
        Self {
            http,
            base: base.into(),
        }
    }

    /// `method path` with an optional JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Answer, Failure> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| Failure::Transport(e.to_string()))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| Failure::Transport(e.to_string()))?;
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok(Answer { status, body })
    }

    /// `call`, expecting `status`: the body, or what came instead.
    pub async fn expect(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        status: StatusCode,
    ) -> Result<Value, Failure> {
        let what = format!("{method} {path}");
        let answer = self.call(method, path, body).await?;
        if answer.status == status {
            Ok(answer.body)
        } else {
            Err(Failure::Unexpected(format!(
                "{what}: {} {} (expected {status})",
                answer.status, answer.body
            )))
        }
    }

    /// A plain-text GET (`/metrics`): status and text.
    pub async fn text(&self, path: &str) -> Result<(StatusCode, String), Failure> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|e| Failure::Transport(e.to_string()))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| Failure::Transport(e.to_string()))?;
        Ok((status, text))
    }
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), Failure> {
    if ok {
        Ok(())
    } else {
        Err(Failure::Unexpected(what()))
    }
}

/// One round of every flow for `user`, each answer checked: log in, find
/// and list the session, blacklist a token and a family, issue and verify a
/// one-time code (a wrong guess, the right one, then again), log out. Each
/// request's latency goes to `timed`.
pub async fn round(
    client: &Client,
    user: &str,
    round: u64,
    timed: &mut impl FnMut(Duration),
) -> Result<(), Failure> {
    use Method as M;
    use StatusCode as S;
    let mut step = async |method: Method, path: String, body: Option<Value>, status| {
        let started = now();
        let answer = client.expect(method, &path, body, status).await;
        timed(started.elapsed());
        answer
    };
    let sessions = format!("/users/{user}/sessions");
    let session = step(
        M::POST,
        sessions.clone(),
        Some(json!({"client": "load"})),
        S::CREATED,
    )
    .await?;
    let sid = session["session_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    check(sid.len() == 32 && session["user"] == user, || {
        format!("login answered {session}")
    })?;
    let found = step(M::GET, format!("{sessions}/{sid}"), None, S::OK).await?;
    check(found["client"] == "load", || {
        format!("the session read back as {found}")
    })?;
    let listed = step(M::GET, sessions.clone(), None, S::OK).await?;
    check(
        listed["sessions"]
            .as_array()
            .is_some_and(|ids| ids.iter().any(|id| id == sid.as_str())),
        || format!("the session is not listed: {listed}"),
    )?;

    let token = format!("t{round}");
    step(
        M::POST,
        format!("/users/{user}/tokens/revoked"),
        Some(json!({"token_id": token, "expires_in": 60})),
        S::NO_CONTENT,
    )
    .await?;
    let revoked = step(M::GET, format!("/users/{user}/tokens/{token}"), None, S::OK).await?;
    check(revoked["status"] == "revoked_token", || {
        format!("a revoked token answered {revoked}")
    })?;
    let family = format!("f{round}");
    step(
        M::POST,
        format!("/users/{user}/families/revoked"),
        Some(json!({"family": family, "expires_in": 60})),
        S::NO_CONTENT,
    )
    .await?;
    let other = step(
        M::GET,
        format!("/users/{user}/tokens/x{round}?family={family}"),
        None,
        S::OK,
    )
    .await?;
    check(other["status"] == "revoked_family", || {
        format!("a token of a revoked family answered {other}")
    })?;
    let valid = step(
        M::GET,
        format!("/users/{user}/tokens/x{round}?family=g{round}"),
        None,
        S::OK,
    )
    .await?;
    check(valid["status"] == "valid", || {
        format!("a token nobody revoked answered {valid}")
    })?;

    let codes = format!("/users/{user}/codes/login");
    let issued = step(M::POST, codes.clone(), None, S::CREATED).await?;
    let code = issued["code"].as_str().unwrap_or_default().to_owned();
    check(code.len() == 6, || {
        format!("issuing a code answered {issued}")
    })?;
    let wrong = format!("{:06}", (code.parse::<u32>().unwrap_or(0) + 1) % 1_000_000);
    let verify = format!("{codes}/verify");
    step(
        M::POST,
        verify.clone(),
        Some(json!({"code": wrong})),
        S::UNAUTHORIZED,
    )
    .await?;
    step(M::POST, verify.clone(), Some(json!({"code": code})), S::OK).await?;
    step(M::POST, verify, Some(json!({"code": code})), S::NOT_FOUND).await?;

    step(M::DELETE, format!("{sessions}/{sid}"), None, S::NO_CONTENT).await?;
    step(M::GET, format!("{sessions}/{sid}"), None, S::NOT_FOUND).await?;
    Ok(())
}

/// The sum of every sample of `name` in Prometheus text (with or without a
/// `_total` suffix) whose labels contain all of `labels` (`key="value"`).
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = match series.find('{') {
                Some(i) => (&series[..i], &series[i..]),
                None => (series, ""),
            };
            let named = metric == name || metric.strip_suffix("_total") == Some(name);
            (named && labels.iter().all(|l| rest.contains(l)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sums_match_name_and_labels() {
        let text = "# TYPE a counter\n\
                    a_total{outcome=\"ok\",x=\"1\"} 3\n\
                    a_total{outcome=\"failed\",x=\"1\"} 2\n\
                    a_b{outcome=\"ok\"} 100\n\
                    a 4\n";
        assert_eq!(metric_sum(text, "a", &[]), 9.0);
        assert_eq!(metric_sum(text, "a", &["outcome=\"ok\""]), 3.0);
        assert_eq!(metric_sum(text, "missing", &[]), 0.0);
    }
}
