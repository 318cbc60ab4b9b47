//! The crate's one error type.
//!
//! [`Error`] is opaque: match on [`Error::kind`], ask [`Error::parameter`] which
//! configuration parameter was wrong, and follow [`std::error::Error::source`] to
//! the underlying cause. Messages say what was wrong and what to check; they never
//! contain a token, a secret access key or a session token.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// What went wrong, for callers that react differently to different failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A parameter is missing or invalid (cache name, user id, region, ...).
    /// [`Error::parameter`] names it. Retrying will not help.
    Configuration,
    /// No usable credentials: the provider failed, or the credentials it gave
    /// have expired. A later attempt may succeed once the provider recovers.
    Credentials,
    /// The SigV4 signer refused its inputs.
    Signing,
    /// The server refused the credentials (`WRONGPASS`, `NOAUTH`). For IAM the
    /// message carries the checklist of what makes a token unacceptable.
    /// Retrying with the same settings will not help.
    AuthenticationRefused,
    /// The server is throttling authentication or IAM is unavailable (`ERR
    /// service is not available`, `ERR Exceeded limit of IAM Authentication
    /// requests`). Retry later, with backoff.
    Throttled,
    /// The TLS handshake failed, or the TLS settings are unusable (no trusted
    /// roots, an unreadable certificate).
    Tls,
    /// The network or the server failed: connection refused or reset, a
    /// timeout, an unexpected reply. A later attempt may succeed.
    Io,
}

type BoxError = Box<dyn StdError + Send + Sync + 'static>;
pub(crate) type SharedSource = Arc<dyn StdError + Send + Sync + 'static>;

/// The error type of this crate.
///
/// Cloning is cheap (the source and any list of problems are shared), so one failure can be handed to
/// every caller that waited on the same operation.
#[derive(Clone)]
pub struct Error {
    kind: ErrorKind,
    parameter: Option<&'static str>,
    /// For a configuration with several problems: every parameter at fault,
    /// in the order found (`parameter` is the first).
    parameters: Vec<&'static str>,
    /// For a configuration with several problems: each of them.
    problems: Arc<[Error]>,
    message: Cow<'static, str>,
    source: Option<SharedSource>,
}

impl Error {
    /// A configuration error about `parameter`. `message` says what the rule is.
    pub(crate) fn config(parameter: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind: ErrorKind::Configuration,
            parameter: Some(parameter),
            parameters: vec![parameter],
            problems: Arc::new([]),
            message: message.into(),
            source: None,
        }
    }

    /// A credentials error.
    pub(crate) fn credentials(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Credentials, message)
    }

    pub(crate) fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            parameter: None,
            parameters: Vec::new(),
            problems: Arc::new([]),
            message: message.into(),
            source: None,
        }
    }

    /// The same error, about `parameter` (an environment variable, say,
    /// rather than the builder method it feeds).
    pub(crate) fn with_parameter(mut self, parameter: &'static str) -> Self {
        self.parameter = Some(parameter);
        self.parameters = vec![parameter];
        self
    }

    /// Attach the underlying cause, reachable through `source()`.
    pub(crate) fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(Arc::from(source.into()));
        self
    }

    /// Attach a cause that is already shared with another error.
    pub(crate) fn with_shared_source(mut self, source: SharedSource) -> Self {
        self.source = Some(source);
        self
    }

    /// The cause, shareable with another error.
    pub(crate) fn shared_source(&self) -> Option<SharedSource> {
        self.source.clone()
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// For configuration errors, the parameter that was missing or invalid,
    /// by the name the user wrote: the builder method (`serverless_cache`,
    /// `replication_group`, `memorydb_cluster`, `target`, `user_id`,
    /// `region`, `token_refresh_interval`, `reauth_after`,
    /// `max_connection_age`, `credentials_provider`, `host`, `port`, `db`,
    /// `url`, `tls`, `password`, `ca_file`, `client_certificate`,
    /// `min_tls_version`, `max_size`, `min_idle`, `refresher`, ...), or the
    /// environment variable (`REDIS_URL`, `AWS_REGION`,
    /// `ELASTICACHE_TOKEN_REFRESH_INTERVAL`, `REDIS_SSL_KEYFILE`, ...);
    /// `runtime` when a refresher is built outside a Tokio runtime. With
    /// several problems, the first (see [`parameters`](Self::parameters)).
    pub fn parameter(&self) -> Option<&'static str> {
        self.parameter
    }

    /// For a configuration error, every parameter at fault: a `build()` that
    /// finds several problems reports them all in one error, and its message
    /// lists them in this order. [`parameter`](Self::parameter) is the first.
    pub fn parameters(&self) -> &[&'static str] {
        &self.parameters
    }

    /// For an error that reports several problems at once, each of them, in
    /// order (to show one per line, say); empty otherwise. Such an error has
    /// the first problem's [`kind`](Self::kind) (nearly always
    /// `Configuration`; a TLS set-up failure can sit among them).
    pub fn problems(&self) -> &[Error] {
        &self.problems
    }

    /// Whether the same operation may succeed if tried again later: true for
    /// credential failures (providers recover, credentials get refreshed),
    /// throttling and I/O errors; false for configuration, signing, TLS and
    /// refused authentication, which need a change of settings.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Credentials | ErrorKind::Throttled | ErrorKind::Io
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind);
        if let Some(parameter) = self.parameter {
            d.field("parameter", &parameter);
        }
        if self.parameters.len() > 1 {
            d.field("parameters", &self.parameters);
        }
        d.field("message", &self.message);
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// The problems a `build()` finds, gathered so that one error reports
/// them all.
#[derive(Clone, Debug, Default)]
pub(crate) struct Problems(Vec<Error>);

impl Problems {
    /// Notes `err`, or each problem it lists.
    pub(crate) fn push(&mut self, err: Error) {
        if err.problems.is_empty() {
            self.0.push(err);
        } else {
            self.0.extend(err.problems.iter().cloned());
        }
    }

    /// Notes each of the `durations` that is zero, by its parameter's name
    /// (`None`: no limit, which is allowed).
    pub(crate) fn check_positive(&mut self, durations: &[(&'static str, Option<Duration>)]) {
        for &(parameter, value) in durations {
            if value == Some(Duration::ZERO) {
                self.push(Error::config(
                    parameter,
                    format!("{parameter} must be more than zero"),
                ));
            }
        }
    }

    /// Notes every problem `other` holds, after these.
    pub(crate) fn append(&mut self, other: Problems) {
        self.0.extend(other.0);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `result`'s value, or `None` with its error noted.
    pub(crate) fn check<T>(&mut self, result: Result<T, Error>) -> Option<T> {
        result.map_err(|err| self.push(err)).ok()
    }

    /// `value` if nothing was found, else one error: the only one, or one
    /// that lists them all (`parameter()` the first, `parameters()` each).
    /// (A builder has a value whenever it found no problem.)
    pub(crate) fn finish<T>(self, value: Option<T>) -> Result<T, Error> {
        let mut problems = self.0;
        match problems.len() {
            0 => value.ok_or_else(|| {
                Error::new(ErrorKind::Configuration, "the configuration is incomplete")
            }),
            1 => Err(problems.remove(0)),
            n => {
                let parameters: Vec<&'static str> = problems
                    .iter()
                    .flat_map(|err| err.parameters().iter().copied())
                    .collect();
                let list: Vec<String> = problems
                    .iter()
                    .enumerate()
                    .map(|(i, err)| format!("({}) {}", i + 1, display_chain(err)))
                    .collect();
                Err(Error {
                    kind: problems[0].kind,
                    parameter: parameters.first().copied(),
                    parameters,
                    message: format!("{n} problems: {}", list.join("; ")).into(),
                    source: None,
                    problems: problems.into(),
                })
            }
        }
    }
}

/// An error and its causes on one line, `outer: inner: innermost`, for
/// messages that must stand on their own (logs, health reports, a CLI's one
/// line on stderr). A cause whose text is already in the line is skipped: many
/// errors repeat their source.
///
/// ```
/// use elasticache_iam::display_chain;
///
/// #[derive(Debug)]
/// struct Outer(std::io::Error);
/// impl std::fmt::Display for Outer {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("the credentials provider failed")
///     }
/// }
/// impl std::error::Error for Outer {
///     fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
///         Some(&self.0)
///     }
/// }
///
/// let err = Outer(std::io::Error::other("connection refused"));
/// assert_eq!(display_chain(&err), "the credentials provider failed: connection refused");
/// ```
pub fn display_chain(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        next = cause.source();
    }
    text
}

/// A user-supplied (never secret) value quoted for an error message: escaped, so
/// control characters and non-ASCII show plainly, and cut to a readable length.
pub(crate) fn quoted(value: &str) -> String {
    const MAX_CHARS: usize = 64;
    match value.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{:?}...", &value[..cut]),
        None => format!("{value:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_error_names_its_parameter() {
        let err = Error::config("region", "region is required");
        assert_eq!(err.kind(), ErrorKind::Configuration);
        assert_eq!(err.parameter(), Some("region"));
        assert!(!err.is_retryable());
        assert_eq!(err.to_string(), "region is required");
    }

    #[test]
    fn source_is_reachable() {
        let cause = std::io::Error::other("provider timed out");
        let err = Error::credentials("could not load credentials").with_source(cause);
        assert!(err.is_retryable());
        assert_eq!(err.source().unwrap().to_string(), "provider timed out");
    }

    #[test]
    fn display_chain_joins_causes_once() {
        let cause = std::io::Error::other("connection refused");
        let err = Error::credentials("the credentials provider failed").with_source(cause);
        assert_eq!(
            display_chain(&err),
            "the credentials provider failed: connection refused"
        );
        let repeated = Error::credentials("failed: connection refused")
            .with_source(std::io::Error::other("connection refused"));
        assert_eq!(display_chain(&repeated), "failed: connection refused");
    }

    #[test]
    fn quoted_escapes_and_truncates() {
        assert_eq!(quoted("my\ncache"), r#""my\ncache""#);
        assert_eq!(quoted(&"a".repeat(100)), format!("{:?}...", "a".repeat(64)));
    }

    #[test]
    fn error_is_send_sync_static() {
        fn assert_bounds<T: Send + Sync + 'static>() {}
        assert_bounds::<Error>();
    }
}
