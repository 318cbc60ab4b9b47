//! How a web service keeps short-lived state in ElastiCache through the IAM
//! pool: login sessions with a TTL and a per-user session index, a revocation
//! list whose entries expire with the token they revoke, and one-time codes.
//!
//! Keys. A user's keys share the hash tag `{user:ID}`, so they live in one
//! slot and multi-key commands and transactions work on a serverless
//! (cluster-mode) cache:
//!
//! | key | type | expires |
//! |---|---|---|
//! | `{user:ID}:session:SID` | hash: `client` | session TTL, renewed on use |
//! | `{user:ID}:sessions` | set of the user's session ids | session TTL from the last login |
//! | `revoked:JTI` | a revoked access token's id | when the token would have |
//! | `{user:ID}:code:PURPOSE` | hash: `code`, `tries` | code TTL, or first right guess, or 5 wrong ones |
//!
//! Configured like the other examples, from the environment (`USE_IAM_AUTH`,
//! `REDIS_URL`, the cache name, `ELASTICACHE_USER_ID`, `AWS_REGION`). It walks
//! through each use, checking every result, one line per step, and exits
//! with status 1 at the first unexpected one:
//!
//! ```text
//! cargo run --example sessions -- --session-ttl 3 --code-ttl 3 --wait
//! ```
//!
//! The pattern throughout: share one `Pool` (clone it into tasks), take a
//! connection per unit of work with `pool.get()`, and let it drop back soon;
//! re-authentication and replacement happen while it is in the pool.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use elasticache_iam::{ConnectionConfig, Pool, display_chain};
use rand::Rng;
use redis::AsyncCommands;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[derive(Parser)]
#[command(about = "Sessions, a revocation list and one-time codes on an IAM-authenticated pool")]
struct Args {
    /// Session lifetime in seconds (renewed on use).
    #[arg(long, default_value_t = 1800)]
    session_ttl: u64,
    /// One-time code lifetime in seconds.
    #[arg(long, default_value_t = 300)]
    code_ttl: u64,
    /// Also wait for the TTLs to pass and check that everything expired.
    #[arg(long)]
    wait: bool,
}

/// Wrong guesses after which a one-time code is void.
const MAX_TRIES: u32 = 5;

/// Compare a code and consume it on a match; count a wrong guess and void
/// the code at `MAX_TRIES` (ARGV[2]). One round trip, atomic.
const REDEEM: &str = r"
local code = redis.call('HGET', KEYS[1], 'code')
if not code then return 0 end
if code == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
if redis.call('HINCRBY', KEYS[1], 'tries', 1) >= tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[1])
end
return 0
";

#[derive(Clone)]
struct Store {
    pool: Pool,
    session_ttl: u64,
    code_ttl: u64,
}

fn session_key(user: &str, sid: &str) -> String {
    format!("{{user:{user}}}:session:{sid}")
}

fn index_key(user: &str) -> String {
    format!("{{user:{user}}}:sessions")
}

fn code_key(user: &str, purpose: &str) -> String {
    format!("{{user:{user}}}:code:{purpose}")
}

/// 128 random bits, hex: unguessable.
fn new_id() -> String {
    format!("{:032x}", rand::rng().random::<u128>())
}

impl Store {
    /// A new session for `user`, listed in the user's index.
    async fn login(&self, user: &str, client: &str) -> Result<String> {
        let sid = new_id();
        let (session, index) = (session_key(user, &sid), index_key(user));
        let mut conn = self.pool.get().await?;
        let () = redis::pipe()
            .atomic()
            .hset(&session, "client", client)
            .expire(&session, self.session_ttl as i64)
            .sadd(&index, &sid)
            .expire(&index, self.session_ttl as i64)
            .query_async(&mut *conn)
            .await?;
        Ok(sid)
    }

    /// The session's client if it is live, renewing its TTL (sliding expiry).
    async fn touch(&self, user: &str, sid: &str) -> Result<Option<String>> {
        let key = session_key(user, sid);
        let mut conn = self.pool.get().await?;
        let (client, _): (Option<String>, bool) = redis::pipe()
            .hget(&key, "client")
            .expire(&key, self.session_ttl as i64)
            .query_async(&mut *conn)
            .await?;
        Ok(client)
    }

    /// The user's live sessions; ids whose session expired leave the index.
    async fn sessions(&self, user: &str) -> Result<Vec<String>> {
        let index = index_key(user);
        let mut conn = self.pool.get().await?;
        let ids: Vec<String> = conn.smembers(&index).await?;
        if ids.is_empty() {
            return Ok(ids);
        }
        let mut exists = redis::pipe();
        for sid in &ids {
            exists.exists(session_key(user, sid));
        }
        let live: Vec<bool> = exists.query_async(&mut *conn).await?;
        let (live, dead): (Vec<_>, Vec<_>) = ids.into_iter().zip(live).partition(|(_, l)| *l);
        if !dead.is_empty() {
            let dead: Vec<String> = dead.into_iter().map(|(sid, _)| sid).collect();
            let _: usize = conn.srem(&index, dead).await?;
        }
        Ok(live.into_iter().map(|(sid, _)| sid).collect())
    }

    async fn logout(&self, user: &str, sid: &str) -> Result<()> {
        let mut conn = self.pool.get().await?;
        let () = redis::pipe()
            .atomic()
            .del(session_key(user, sid))
            .srem(index_key(user), sid)
            .ignore()
            .ignore()
            .query_async(&mut *conn)
            .await?;
        Ok(())
    }

    /// Ends every session of `user`; how many there were.
    async fn logout_everywhere(&self, user: &str) -> Result<usize> {
        let index = index_key(user);
        let mut conn = self.pool.get().await?;
        let ids: Vec<String> = conn.smembers(&index).await?;
        let mut keys: Vec<String> = ids.iter().map(|sid| session_key(user, sid)).collect();
        keys.push(index);
        let deleted: usize = conn.del(keys).await?;
        Ok(deleted.saturating_sub(1))
    }

    /// Revoke an access token (by its `jti`) for the rest of its life; the
    /// entry goes when the token would have expired anyway.
    async fn revoke(&self, jti: &str, remaining: Duration) -> Result<()> {
        let millis = remaining.as_millis() as u64;
        if millis == 0 {
            return Ok(()); // already expired: nothing to revoke
        }
        let mut conn = self.pool.get().await?;
        let () = conn.pset_ex(format!("revoked:{jti}"), 1, millis).await?;
        Ok(())
    }

    async fn is_revoked(&self, jti: &str) -> Result<bool> {
        let mut conn = self.pool.get().await?;
        Ok(conn.exists(format!("revoked:{jti}")).await?)
    }

    /// A six-digit code for `purpose`, replacing any earlier one.
    async fn issue_code(&self, user: &str, purpose: &str) -> Result<String> {
        let code = format!("{:06}", rand::rng().random_range(0..1_000_000));
        let key = code_key(user, purpose);
        let mut conn = self.pool.get().await?;
        let () = redis::pipe()
            .atomic()
            .del(&key)
            .hset_multiple(&key, &[("code", code.as_str()), ("tries", "0")])
            .expire(&key, self.code_ttl as i64)
            .ignore()
            .ignore()
            .ignore()
            .query_async(&mut *conn)
            .await?;
        Ok(code)
    }

    /// Whether `code` is right; a right code works once.
    async fn redeem_code(&self, user: &str, purpose: &str, code: &str) -> Result<bool> {
        let mut conn = self.pool.get().await?;
        let matched: u8 = redis::Script::new(REDEEM)
            .key(code_key(user, purpose))
            .arg(code)
            .arg(MAX_TRIES)
            .invoke_async(&mut *conn)
            .await?;
        Ok(matched == 1)
    }
}

/// Check one step: print it, or fail with what was expected.
fn check(step: &str, ok: bool) -> Result<()> {
    if ok {
        println!("ok   {step}");
        Ok(())
    } else {
        Err(format!("FAILED {step}").into())
    }
}

async fn walkthrough(store: &Store, wait: bool) -> Result<()> {
    let user = format!("u{}", &new_id()[..8]);

    // Sessions: 20 logins at once from tasks sharing the pool.
    let logins: Vec<_> = (0..20)
        .map(|n| {
            let (store, user) = (store.clone(), user.clone());
            tokio::spawn(async move { store.login(&user, &format!("device-{n}")).await })
        })
        .collect();
    let mut sids = Vec::new();
    for login in logins {
        sids.push(login.await??);
    }
    check(
        "20 concurrent logins",
        store.sessions(&user).await?.len() == 20,
    )?;
    check(
        "a live session is found and renewed",
        store.touch(&user, &sids[3]).await?.as_deref() == Some("device-3"),
    )?;
    store.logout(&user, &sids[0]).await?;
    check(
        "logout ends one session",
        store.touch(&user, &sids[0]).await?.is_none() && store.sessions(&user).await?.len() == 19,
    )?;
    check(
        "logout everywhere ends the rest",
        store.logout_everywhere(&user).await? == 19 && store.sessions(&user).await?.is_empty(),
    )?;
    let sid = store.login(&user, "laptop").await?;

    // Revocation list.
    let jti = new_id();
    check("a token is not revoked", !store.is_revoked(&jti).await?)?;
    store
        .revoke(&jti, Duration::from_secs(store.session_ttl))
        .await?;
    check("a revoked token is", store.is_revoked(&jti).await?)?;

    // One-time codes.
    let code = store.issue_code(&user, "email").await?;
    let wrong = format!("{:06}", (code.parse::<u32>()? + 1) % 1_000_000);
    check(
        "a wrong code is refused",
        !store.redeem_code(&user, "email", &wrong).await?,
    )?;
    check(
        "the right code works",
        store.redeem_code(&user, "email", &code).await?,
    )?;
    check(
        "and only once",
        !store.redeem_code(&user, "email", &code).await?,
    )?;
    let code = store.issue_code(&user, "email").await?;
    for _ in 0..MAX_TRIES {
        store.redeem_code(&user, "email", &wrong).await?;
    }
    check(
        "five wrong guesses void a code",
        !store.redeem_code(&user, "email", &code).await?,
    )?;

    if wait {
        let code = store.issue_code(&user, "sms").await?;
        let longest = store.session_ttl.max(store.code_ttl);
        tokio::time::sleep(Duration::from_millis(longest * 1000 + 1500)).await;
        check(
            "sessions expire, and leave the index",
            store.touch(&user, &sid).await?.is_none() && store.sessions(&user).await?.is_empty(),
        )?;
        check(
            "revocations expire with their token",
            !store.is_revoked(&jti).await?,
        )?;
        check(
            "codes expire",
            !store.redeem_code(&user, "sms", &code).await?,
        )?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config = match ConnectionConfig::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {}", display_chain(&err));
            return ExitCode::from(2);
        }
    };
    let pool = match Pool::builder(config).build().await {
        Ok(pool) => pool,
        Err(err) => {
            eprintln!("error: {}", display_chain(&err));
            return ExitCode::from(1);
        }
    };
    let store = Store {
        pool,
        session_ttl: args.session_ttl,
        code_ttl: args.code_ttl,
    };
    match walkthrough(&store, args.wait).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(1)
        }
    }
}
