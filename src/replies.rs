//! What the server's error replies mean for a connection: refused
//! authentication (with the checklist), throttling, a server without `HELLO`,
//! or a plain I/O or server failure.

use redis::RedisError;

use crate::config::IamAuth;
use crate::error::{Error, ErrorKind};
use crate::target::TargetKind;

/// The replies ElastiCache and MemoryDB give while IAM is throttling or
/// unavailable: `ERR service is not available` before authentication, the
/// other two on re-authentication (AWS's ElastiCache user guide,
/// "Authenticating with IAM").
const THROTTLING: [&str; 3] = [
    "Exceeded limit of IAM Authentication requests",
    "IAM Authentication service is not available",
    "service is not available",
];

/// What an error reply or failure means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Meaning {
    /// `WRONGPASS` / `NOAUTH`: the credentials were refused.
    Refused,
    /// Throttled, or IAM unavailable: retry later.
    Throttled,
    /// `HELLO` is unknown to this server: use `AUTH`.
    NoHello,
    /// Anything else: the network or the server.
    Other,
}

pub(crate) fn meaning(err: &RedisError) -> Meaning {
    let code = err.code().unwrap_or_default();
    let text = err.to_string();
    if matches!(code, "WRONGPASS" | "NOAUTH")
        || text.contains("WRONGPASS")
        || text.contains("NOAUTH")
    {
        Meaning::Refused
    } else if THROTTLING.iter().any(|t| text.contains(t)) {
        Meaning::Throttled
    } else if code == "NOPROTO"
        // redis-rs's own error for Redis 5's ``unknown command `HELLO` ``.
        || err.kind() == redis::ErrorKind::RESP3NotSupported
        || (text.contains("unknown command") && text.to_ascii_uppercase().contains("HELLO"))
    {
        Meaning::NoHello
    } else {
        Meaning::Other
    }
}

/// The crate's error for a failed connection attempt or re-authentication.
/// `iam` gives the checklist its names; `None` means password or no auth.
pub(crate) fn to_error(err: RedisError, iam: Option<&IamAuth>, endpoint: &str) -> Error {
    match meaning(&err) {
        Meaning::Refused => refused(iam, endpoint).with_source(err),
        Meaning::Throttled => Error::new(
            ErrorKind::Throttled,
            format!(
                "{endpoint} is throttling authentication or IAM is unavailable; \
                 retrying with backoff"
            ),
        )
        .with_source(err),
        Meaning::NoHello | Meaning::Other => {
            let what = if err.is_timeout() {
                format!("{endpoint} did not answer in time")
            } else if err.is_io_error()
                || err.is_connection_dropped()
                || err.is_connection_refusal()
            {
                format!("{endpoint} is unreachable or closed the connection")
            } else {
                format!("{endpoint} answered with an error")
            };
            Error::new(ErrorKind::Io, what).with_source(err)
        }
    }
}

/// Authentication refused, with what to check.
pub(crate) fn refused(iam: Option<&IamAuth>, endpoint: &str) -> Error {
    let Some(iam) = iam else {
        return Error::new(
            ErrorKind::AuthenticationRefused,
            format!(
                "{endpoint} refused authentication: check the user name and password \
                 (REDIS_USERNAME, REDIS_PASSWORD or the URL), or whether the server needs \
                 a password at all"
            ),
        );
    };
    let user = iam.user_id.as_str();
    let name = iam.target.name();
    let region = &iam.region;
    let (what, resource_arn, user_arn, action, type_check) = match iam.target.kind() {
        TargetKind::ServerlessCache => (
            "serverless cache",
            format!("arn:aws:elasticache:{region}:ACCOUNT:serverlesscache:{name}"),
            format!("arn:aws:elasticache:{region}:ACCOUNT:user:{user}"),
            "elasticache:Connect",
            "it is a serverless cache (tokens carry ResourceType=ServerlessCache; a node-based \
             cache needs ELASTICACHE_REPLICATION_GROUP instead)",
        ),
        TargetKind::ReplicationGroup => (
            "replication group",
            format!("arn:aws:elasticache:{region}:ACCOUNT:replicationgroup:{name}"),
            format!("arn:aws:elasticache:{region}:ACCOUNT:user:{user}"),
            "elasticache:Connect",
            "it is a node-based cache (a serverless cache needs ELASTICACHE_SERVERLESS_CACHE, \
             whose tokens carry ResourceType=ServerlessCache)",
        ),
        TargetKind::MemoryDbCluster => (
            "MemoryDB cluster",
            format!("arn:aws:memorydb:{region}:ACCOUNT:cluster/{name}"),
            format!("arn:aws:memorydb:{region}:ACCOUNT:user/{user}"),
            "memorydb:Connect",
            "it is a MemoryDB cluster (MEMORYDB_CLUSTER), not an ElastiCache cache",
        ),
    };
    Error::new(
        ErrorKind::AuthenticationRefused,
        format!(
            "{endpoint} refused IAM authentication (WRONGPASS) as user {user:?} for {what} \
             {name:?} in {region}. Check: (1) {name:?} is the cache's own name, lowercase, \
             not its endpoint; (2) the user's id and user name are both {user:?}, it has IAM \
             authentication enabled and is in the cache's user group; (3) {type_check}; \
             (4) the cache is in {region}; (5) the IAM principal is allowed {action} on both \
             {resource_arn} and {user_arn}; (6) this machine's clock is right (tokens are \
             valid for 15 minutes from signing)"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::{Target, UserId};

    /// The error redis-rs makes of an error reply `text`.
    fn server(text: &str) -> RedisError {
        redis::parse_redis_value(format!("-{text}\r\n").as_bytes())
            .unwrap()
            .extract_error()
            .unwrap_err()
    }

    #[test]
    fn replies_are_classified() {
        let cases = [
            ("WRONGPASS invalid username-password pair", Meaning::Refused),
            ("NOAUTH Authentication required.", Meaning::Refused),
            ("ERR service is not available", Meaning::Throttled),
            (
                "ERR Exceeded limit of IAM Authentication requests",
                Meaning::Throttled,
            ),
            (
                "ERR IAM Authentication service is not available",
                Meaning::Throttled,
            ),
            ("ERR unknown command 'HELLO'", Meaning::NoHello),
            (
                "ERR unknown command `HELLO`, with args beginning with: `3`, ",
                Meaning::NoHello,
            ),
            ("NOPROTO unsupported protocol version", Meaning::NoHello),
            ("ERR unknown command 'FOO'", Meaning::Other),
            ("LOADING Redis is loading the dataset", Meaning::Other),
        ];
        for (text, expected) in cases {
            assert_eq!(meaning(&server(text)), expected, "{text}");
        }
        // What redis-rs makes of Redis 5's answer to HELLO.
        let no_resp3 = RedisError::from((
            redis::ErrorKind::RESP3NotSupported,
            "Redis Server doesn't support HELLO command therefore resp3 cannot be used",
        ));
        assert_eq!(meaning(&no_resp3), Meaning::NoHello);
    }

    #[test]
    fn checklist_names_what_was_signed() {
        let iam = IamAuth {
            target: Target::serverless_cache("my-cache").unwrap(),
            user_id: UserId::new("iam-user-01").unwrap(),
            region: "eu-west-1".into(),
        };
        let err = to_error(
            server("WRONGPASS invalid username-password pair"),
            Some(&iam),
            "cache.example:6379",
        );
        assert_eq!(err.kind(), ErrorKind::AuthenticationRefused);
        assert!(!err.is_retryable());
        let text = err.to_string();
        for part in [
            "\"my-cache\"",
            "lowercase",
            "\"iam-user-01\"",
            "ResourceType=ServerlessCache",
            "eu-west-1",
            "elasticache:Connect",
            "arn:aws:elasticache:eu-west-1:ACCOUNT:serverlesscache:my-cache",
            "arn:aws:elasticache:eu-west-1:ACCOUNT:user:iam-user-01",
            "clock",
        ] {
            assert!(text.contains(part), "{part} missing from: {text}");
        }
    }
}
