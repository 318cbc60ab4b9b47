//! The IAM auth token: a bearer secret with its validity window.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use zeroize::Zeroizing;

/// How long ElastiCache and MemoryDB accept a token after it was signed
/// (`X-Amz-Expires=900`).
pub(crate) const TOKEN_VALIDITY: Duration = Duration::from_secs(900);

/// A token is handed out only while at least this much of its usable life
/// remains: room for the connection attempt that carries it and for a clock a
/// little ahead of the server's.
pub(crate) const SAFETY_MARGIN: Duration = Duration::from_secs(30);

/// An IAM authentication token, the password for `AUTH <user_id> <token>`.
///
/// The token is a bearer secret: anyone holding it can connect as the user for
/// up to 15 minutes. It has no `Display`, its `Debug` prints a redaction, and
/// its memory is zeroed when the last clone is dropped (clones share one copy,
/// so handing the current token to many connections copies nothing). Read it with
/// [`expose_secret`](Self::expose_secret) only where it is sent.
#[derive(Clone)]
pub struct AuthToken {
    secret: Arc<Zeroizing<String>>,
    signed_at: SystemTime,
    usable_until: SystemTime,
}

impl AuthToken {
    /// How long ElastiCache and MemoryDB accept a token after it was signed
    /// (`X-Amz-Expires=900`): 15 minutes.
    pub const VALIDITY: Duration = TOKEN_VALIDITY;

    pub(crate) fn new(
        secret: String,
        signed_at: SystemTime,
        credentials_expiry: Option<SystemTime>,
    ) -> Self {
        let expires_at = signed_at + TOKEN_VALIDITY;
        let usable_until = credentials_expiry.map_or(expires_at, |expiry| expiry.min(expires_at));
        Self {
            secret: Arc::new(Zeroizing::new(secret)),
            signed_at,
            usable_until,
        }
    }

    /// The token string: the presigned request without its `http://` scheme.
    pub fn expose_secret(&self) -> &str {
        self.secret.as_str()
    }

    /// The signing time (`X-Amz-Date`).
    pub fn signed_at(&self) -> SystemTime {
        self.signed_at
    }

    /// When the server stops accepting the token: 15 minutes after signing.
    pub fn expires_at(&self) -> SystemTime {
        self.signed_at + TOKEN_VALIDITY
    }

    /// The end of the token's usable life: the earlier of
    /// [`expires_at`](Self::expires_at) and the expiry of the temporary
    /// credentials that signed it (a token is worth nothing once they expire).
    pub fn usable_until(&self) -> SystemTime {
        self.usable_until
    }
}

impl fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            secret: _,
            signed_at,
            usable_until,
        } = self;
        f.debug_struct("AuthToken")
            .field("token", &"** redacted **")
            .field("signed_at", &format_time(*signed_at))
            .field("usable_until", &format_time(*usable_until))
            .finish()
    }
}

/// An instant as RFC 3339 UTC text, for messages and `Debug`.
pub(crate) fn format_time(t: SystemTime) -> String {
    OffsetDateTime::from(t)
        .format(&Rfc3339)
        .unwrap_or_else(|_| format!("{t:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    const SIGNED: Duration = Duration::from_secs(1_705_322_096); // 2024-01-15T12:34:56Z

    #[test]
    fn usable_until_is_fifteen_minutes_without_credential_expiry() {
        let signed_at = UNIX_EPOCH + SIGNED;
        let token = AuthToken::new("t".into(), signed_at, None);
        assert_eq!(token.expires_at(), signed_at + Duration::from_secs(900));
        assert_eq!(token.usable_until(), token.expires_at());
    }

    #[test]
    fn usable_until_is_capped_by_credential_expiry() {
        let signed_at = UNIX_EPOCH + SIGNED;
        let soon = signed_at + Duration::from_secs(300);
        let token = AuthToken::new("t".into(), signed_at, Some(soon));
        assert_eq!(token.usable_until(), soon);
        let late = signed_at + Duration::from_secs(3600);
        let token = AuthToken::new("t".into(), signed_at, Some(late));
        assert_eq!(token.usable_until(), token.expires_at());
    }

    #[test]
    fn debug_is_exactly_the_redaction() {
        let token = AuthToken::new("SECRET-MARKER".into(), UNIX_EPOCH + SIGNED, None);
        assert_eq!(
            format!("{token:?}"),
            r#"AuthToken { token: "** redacted **", signed_at: "2024-01-15T12:34:56Z", usable_until: "2024-01-15T12:49:56Z" }"#
        );
        assert_eq!(token.expose_secret(), "SECRET-MARKER");
    }
}
