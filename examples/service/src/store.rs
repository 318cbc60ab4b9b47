//! The data model: login sessions, a token blacklist and one-time codes, on
//! one shared connection handle.
//!
//! A user's keys share the hash tag `{user:ID}`, so they live in one slot and
//! every multi-key command, pipeline and transaction works on a serverless or
//! cluster-mode cache:
//!
//! | key | type | expires |
//! |---|---|---|
//! | `{user:ID}:session:SID` | hash: `client` | session TTL, renewed on use |
//! | `{user:ID}:sessions` | set of the user's session ids | session TTL from the last login |
//! | `{user:ID}:revoked:token:JTI` | a revoked token id | when the token would have |
//! | `{user:ID}:revoked:family:FAMILY` | a revoked token family | when its last token would have |
//! | `{user:ID}:code:PURPOSE` | hash: `code`, `tries` | code TTL, or the right guess, or 5 wrong ones |
//!
//! Names that go into keys are checked first ([`check_name`]): a `{` or `}`
//! in a user id would move its keys to another slot.

use std::fmt;
use std::time::Duration;

use elasticache_iam::SharedConnection;
use rand::Rng;
use redis::{AsyncCommands, RedisError};
use serde::Serialize;

/// Wrong guesses after which a one-time code is void.
pub const MAX_TRIES: u32 = 5;

/// Compares a code and consumes it on a match; counts a wrong guess and
/// voids the code at `ARGV[2]` wrong guesses. One round trip, atomic.
/// Returns `{outcome, tries left}`: 1 right, 0 no code, 2 wrong, 3 wrong and
/// now void.
const VERIFY: &str = r"
local code = redis.call('HGET', KEYS[1], 'code')
if not code then return {0, 0} end
if code == ARGV[1] then redis.call('DEL', KEYS[1]) return {1, 0} end
local tries = redis.call('HINCRBY', KEYS[1], 'tries', 1)
local left = tonumber(ARGV[2]) - tries
if left <= 0 then redis.call('DEL', KEYS[1]) return {3, 0} end
return {2, left}
";

/// Ends every session of a user at once: each session id in the index
/// (`KEYS[1]`) names a session key (`ARGV[1]` .. id, in the same hash tag, so
/// the same slot); returns how many sessions were live. Atomic, so a login
/// cannot slip between reading the index and deleting it.
const REVOKE_ALL: &str = r"
local live = 0
for _, sid in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  live = live + redis.call('DEL', ARGV[1] .. sid)
end
redis.call('DEL', KEYS[1])
return live
";

/// The longest a blacklist entry may last: ten years, in seconds.
pub const MAX_EXPIRES_IN: u64 = 10 * 365 * 24 * 3600;

/// What went wrong: the request's input, or the cache.
#[derive(Debug)]
pub enum StoreError {
    /// A name that cannot go into a key: what is wrong with it.
    Invalid(String),
    /// The cache did not answer as it should.
    Redis(RedisError),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Invalid(why) => f.write_str(why),
            StoreError::Redis(err) => write!(f, "the cache failed: {err}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<RedisError> for StoreError {
    fn from(err: RedisError) -> Self {
        StoreError::Redis(err)
    }
}

/// A store operation's outcome.
pub type Result<T> = std::result::Result<T, StoreError>;

/// A live session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Session {
    /// Whose.
    pub user: String,
    /// Its id: 128 random bits, hex.
    pub session_id: String,
    /// What the login named as its client.
    pub client: String,
    /// Seconds until it expires (renewed on use).
    pub expires_in: u64,
}

/// Whether a token may be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenStatus {
    /// Not revoked.
    Valid,
    /// Its id was revoked.
    RevokedToken,
    /// Its family was revoked.
    RevokedFamily,
}

/// The outcome of a code check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Right: the code is used up.
    Right,
    /// Wrong, with guesses left.
    Wrong {
        /// Wrong guesses still allowed.
        tries_left: u32,
    },
    /// Wrong, and that was the last guess: the code is void.
    Voided,
    /// No code: never issued, used, voided or expired.
    NoCode,
}

/// The service's data, on a shared connection handle.
#[derive(Clone, Debug)]
pub struct Store {
    redis: SharedConnection,
    session_ttl: Duration,
    code_ttl: Duration,
}

impl Store {
    /// The store on `redis`, with these lifetimes.
    pub fn new(redis: SharedConnection, session_ttl: Duration, code_ttl: Duration) -> Self {
        Self {
            redis,
            session_ttl,
            code_ttl,
        }
    }

    /// The connection handle (for health and metrics).
    pub fn redis(&self) -> &SharedConnection {
        &self.redis
    }

    fn conn(&self) -> SharedConnection {
        self.redis.clone()
    }

    fn session_secs(&self) -> i64 {
        self.session_ttl.as_secs() as i64
    }

    /// A new session for `user` from `client`, listed in the user's index.
    pub async fn login(&self, user: &str, client: &str) -> Result<Session> {
        check_name("user", user)?;
        let sid = new_id();
        let (session, index) = (session_key(user, &sid), index_key(user));
        let () = redis::pipe()
            .atomic()
            .hset(&session, "client", client)
            .expire(&session, self.session_secs())
            .sadd(&index, &sid)
            .expire(&index, self.session_secs())
            .ignore()
            .ignore()
            .ignore()
            .ignore()
            .query_async(&mut self.conn())
            .await?;
        Ok(Session {
            user: user.to_owned(),
            session_id: sid,
            client: client.to_owned(),
            expires_in: self.session_ttl.as_secs(),
        })
    }

    /// The session if it is live, its lifetime renewed (sliding expiry). The
    /// user's index lives at least as long, so that a session in use stays
    /// listed and is ended by [`revoke_all`](Self::revoke_all).
    pub async fn session(&self, user: &str, sid: &str) -> Result<Option<Session>> {
        check_name("user", user)?;
        check_name("session id", sid)?;
        let key = session_key(user, sid);
        let (client, _, _): (Option<String>, bool, bool) = redis::pipe()
            .atomic()
            .hget(&key, "client")
            .expire(&key, self.session_secs())
            // GT: never shortens the index that a later login lengthened.
            .cmd("EXPIRE")
            .arg(index_key(user))
            .arg(self.session_secs())
            .arg("GT")
            .query_async(&mut self.conn())
            .await?;
        Ok(client.map(|client| Session {
            user: user.to_owned(),
            session_id: sid.to_owned(),
            client,
            expires_in: self.session_ttl.as_secs(),
        }))
    }

    /// The user's live session ids; ids whose session expired leave the
    /// index.
    pub async fn sessions(&self, user: &str) -> Result<Vec<String>> {
        check_name("user", user)?;
        let index = index_key(user);
        let mut conn = self.conn();
        let mut ids: Vec<String> = conn.smembers(&index).await?;
        if ids.is_empty() {
            return Ok(ids);
        }
        ids.sort();
        let mut exists = redis::pipe();
        for sid in &ids {
            exists.exists(session_key(user, sid));
        }
        let live: Vec<bool> = exists.query_async(&mut conn).await?;
        let (live, dead): (Vec<_>, Vec<_>) = ids.into_iter().zip(live).partition(|(_, l)| *l);
        if !dead.is_empty() {
            let dead: Vec<String> = dead.into_iter().map(|(sid, _)| sid).collect();
            let _: usize = conn.srem(&index, dead).await?;
        }
        Ok(live.into_iter().map(|(sid, _)| sid).collect())
    }

    /// Ends one session; whether it was live.
    pub async fn revoke_session(&self, user: &str, sid: &str) -> Result<bool> {
        check_name("user", user)?;
        check_name("session id", sid)?;
        let (deleted, _): (u32, u32) = redis::pipe()
            .atomic()
            .del(session_key(user, sid))
            .srem(index_key(user), sid)
            .query_async(&mut self.conn())
            .await?;
        Ok(deleted == 1)
    }

    /// Ends every session of `user`; how many were live.
    pub async fn revoke_all(&self, user: &str) -> Result<usize> {
        check_name("user", user)?;
        let live: usize = redis::Script::new(REVOKE_ALL)
            .key(index_key(user))
            .arg(session_key(user, ""))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(live)
    }

    /// Blacklists token `jti` of `user` for `remaining` (the rest of its
    /// life); the entry goes when the token would have expired anyway.
    pub async fn revoke_token(&self, user: &str, jti: &str, remaining: Duration) -> Result<()> {
        check_name("user", user)?;
        check_name("token id", jti)?;
        self.blacklist(token_key(user, jti), remaining).await
    }

    /// Blacklists every token of `family` (a refresh-token chain) for
    /// `remaining` (the life of its longest-lived token).
    pub async fn revoke_family(&self, user: &str, family: &str, remaining: Duration) -> Result<()> {
        check_name("user", user)?;
        check_name("family", family)?;
        self.blacklist(family_key(user, family), remaining).await
    }

    async fn blacklist(&self, key: String, remaining: Duration) -> Result<()> {
        if remaining.is_zero() || remaining.as_secs() > MAX_EXPIRES_IN {
            return Err(StoreError::Invalid(format!(
                "expires_in must be 1 to {MAX_EXPIRES_IN} seconds (an expired token needs no \
                 revoking)"
            )));
        }
        let millis = remaining.as_millis() as u64;
        let () = self.conn().pset_ex(key, 1, millis).await?;
        Ok(())
    }

    /// Whether token `jti` of `user`, of `family` if it has one, is revoked.
    pub async fn token_status(
        &self,
        user: &str,
        jti: &str,
        family: Option<&str>,
    ) -> Result<TokenStatus> {
        check_name("user", user)?;
        check_name("token id", jti)?;
        if let Some(family) = family {
            check_name("family", family)?;
        }
        let (token, family): (bool, bool) = redis::pipe()
            .exists(token_key(user, jti))
            .exists(family.map_or_else(
                // A key nobody writes: the family check answers false.
                || family_key(user, ""),
                |family| family_key(user, family),
            ))
            .query_async(&mut self.conn())
            .await?;
        Ok(if token {
            TokenStatus::RevokedToken
        } else if family {
            TokenStatus::RevokedFamily
        } else {
            TokenStatus::Valid
        })
    }

    /// A six-digit code for `purpose`, replacing any earlier one.
    pub async fn issue_code(&self, user: &str, purpose: &str) -> Result<String> {
        check_name("user", user)?;
        check_name("purpose", purpose)?;
        let code = format!("{:06}", rand::rng().random_range(0..1_000_000));
        let key = code_key(user, purpose);
        let () = redis::pipe()
            .atomic()
            .del(&key)
            .hset_multiple(&key, &[("code", code.as_str()), ("tries", "0")])
            .expire(&key, self.code_ttl.as_secs() as i64)
            .ignore()
            .ignore()
            .ignore()
            .query_async(&mut self.conn())
            .await?;
        Ok(code)
    }

    /// Checks `code`: a right code works once; wrong guesses are counted,
    /// and the [`MAX_TRIES`]th voids the code.
    pub async fn verify_code(&self, user: &str, purpose: &str, code: &str) -> Result<Verdict> {
        check_name("user", user)?;
        check_name("purpose", purpose)?;
        let (outcome, left): (u8, u32) = redis::Script::new(VERIFY)
            .key(code_key(user, purpose))
            .arg(code)
            .arg(MAX_TRIES)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(match outcome {
            1 => Verdict::Right,
            2 => Verdict::Wrong { tries_left: left },
            3 => Verdict::Voided,
            _ => Verdict::NoCode,
        })
    }

    /// The code lifetime.
    pub fn code_ttl(&self) -> Duration {
        self.code_ttl
    }
}

/// Names that go into keys: 1 to 128 ASCII letters, digits, `-`, `_`, `.`,
/// `@`; nothing that could change the hash tag or the key's shape.
pub fn check_name(what: &str, name: &str) -> Result<()> {
    let fine = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'));
    if fine {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "invalid {what}: 1 to 128 ASCII letters, digits, '-', '_', '.' or '@'"
        )))
    }
}

fn session_key(user: &str, sid: &str) -> String {
    format!("{{user:{user}}}:session:{sid}")
}

fn index_key(user: &str) -> String {
    format!("{{user:{user}}}:sessions")
}

fn token_key(user: &str, jti: &str) -> String {
    format!("{{user:{user}}}:revoked:token:{jti}")
}

fn family_key(user: &str, family: &str) -> String {
    format!("{{user:{user}}}:revoked:family:{family}")
}

fn code_key(user: &str, purpose: &str) -> String {
    format!("{{user:{user}}}:code:{purpose}")
}

/// 128 random bits, hex: unguessable.
fn new_id() -> String {
    format!("{:032x}", rand::rng().random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_move_keys_are_refused() {
        for bad in ["", "a}b", "{x}", "a b", "é", &"x".repeat(129)] {
            assert!(check_name("user", bad).is_err(), "{bad:?}");
        }
        for good in ["alice", "user-01", "a.b@example.com", "A_9"] {
            assert!(check_name("user", good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn a_users_keys_share_one_hash_tag() {
        let keys = [
            session_key("u1", "s"),
            index_key("u1"),
            token_key("u1", "t"),
            family_key("u1", "f"),
            code_key("u1", "login"),
        ];
        for key in keys {
            assert!(key.starts_with("{user:u1}:"), "{key}");
        }
    }
}
