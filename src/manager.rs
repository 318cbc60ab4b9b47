//! The bb8 connection manager: opens authenticated connections, and reports
//! the closed, the failed, the dirty and the expired.
//!
//! * **connect**: TCP (keepalive, see `socket`), TLS, then `HELLO 3 AUTH
//!   <user> <token>` with the refresher's current token, so one IAM
//!   authentication per new standalone connection. On servers without
//!   `HELLO`, `AUTH` is sent and its reply read here (redis-rs would turn a
//!   refusal and a throttle into the same error), then the connection is set
//!   up in RESP2. Cluster mode uses redis-rs's cluster client with the
//!   refresher as its credentials provider.
//! * **is_valid** (checkout): closed or past its deadline is an error (bb8
//!   drops it and tries another). A connection past its re-auth point
//!   re-authenticates with the borrower's first command (see `connection`).
//! * **has_broken** (check-in): closed, failed, left with session state
//!   (`MULTI`, `WATCH`, another database, ...: counted as `discarded_dirty`),
//!   or past its deadline.
//!
//! Connection attempts go through a [`Gate`]: a bounded number at a time, and
//! after a failure the next one waits a jittered, growing delay, so a fleet
//! whose connections all dropped does not storm the server or IAM.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::ExponentialBackoff;
use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClient;
use redis::{AsyncConnectionConfig, ProtocolVersion, RedisConnectionInfo, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, SemaphorePermit, watch};
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::clock::monotonic_now;
use crate::config::{ConnectionConfig, IamAuth};
use crate::connection::{ClusterSlot, Connection, Inner, Settings};
use crate::counters::{Counters, bump};
use crate::error::{Error, ErrorKind, display_chain};
use crate::life::Life;
use crate::reauth::Reauthenticator;
use crate::refresher::TokenRefresher;
use crate::replies::{self, Meaning};
use crate::socket;
use crate::tls::TlsConnector;

/// The [`bb8::ManageConnection`] behind [`Pool`](crate::Pool). Build it
/// through [`Pool::builder`](crate::Pool::builder).
#[derive(Clone)]
pub struct Manager {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager")
            .field("endpoint", &self.shared.endpoint)
            .field("auth", &self.shared.auth)
            .field(
                "cluster",
                &matches!(self.shared.transport, Transport::Cluster(_)),
            )
            .finish_non_exhaustive()
    }
}

pub(crate) struct Shared {
    pub(crate) endpoint: String,
    pub(crate) config: ConnectionConfig,
    pub(crate) auth: AuthSource,
    pub(crate) transport: Transport,
    pub(crate) connect_timeout: Duration,
    gate: Gate,
    pub(crate) counters: Arc<Counters>,
    /// What every connection shares: reply deadlines, the database,
    /// re-authentication.
    settings: Arc<Settings>,
    /// The last failed connection attempt, and whether one succeeded since.
    /// `failures` moves on at each failure (for callers waiting in
    /// `Pool::get`).
    last_failure: Mutex<LastFailure>,
    pub(crate) failures: watch::Sender<u64>,
}

#[derive(Default)]
struct LastFailure {
    error: Option<Error>,
    /// An attempt succeeded after it.
    recovered: bool,
}

/// How connections authenticate, with what they need for it.
pub(crate) enum AuthSource {
    None,
    Password {
        username: Option<String>,
        password: Zeroizing<String>,
    },
    Iam {
        refresher: TokenRefresher,
        iam: IamAuth,
    },
}

impl fmt::Debug for AuthSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.mode())
    }
}

impl AuthSource {
    pub(crate) fn mode(&self) -> &'static str {
        match self {
            AuthSource::None => "none",
            AuthSource::Password { .. } => "password",
            AuthSource::Iam { .. } => "iam",
        }
    }

    fn iam(&self) -> Option<&IamAuth> {
        match self {
            AuthSource::Iam { iam, .. } => Some(iam),
            _ => None,
        }
    }
}

pub(crate) enum Transport {
    Standalone {
        tls: Option<TlsConnector>,
        /// Set once a server refused `HELLO`: authenticate with `AUTH`.
        resp2: AtomicBool,
    },
    Cluster(Box<ClusterClient>),
}

impl Shared {
    pub(crate) fn new(
        config: ConnectionConfig,
        auth: AuthSource,
        transport: Transport,
        connect_timeout: Duration,
        response_timeout: Option<Duration>,
        max_concurrent_connects: usize,
    ) -> Self {
        let endpoint = config.endpoint();
        let counters = Arc::<Counters>::default();
        let reauthenticator = match (&auth, &transport) {
            (AuthSource::Iam { refresher, iam }, Transport::Standalone { .. }) => {
                Some(Reauthenticator::new(
                    refresher.clone(),
                    iam.clone(),
                    endpoint.clone(),
                    *config.lifecycle(),
                    Arc::clone(&counters),
                ))
            }
            _ => None,
        };
        let settings = Arc::new(Settings {
            response_timeout,
            auth_timeout: connect_timeout,
            db: config.db(),
            reauthenticator,
            counters: Arc::clone(&counters),
            lifecycle: *config.lifecycle(),
        });
        Self {
            endpoint,
            config,
            auth,
            transport,
            connect_timeout,
            gate: Gate::new(max_concurrent_connects),
            counters,
            settings,
            last_failure: Mutex::default(),
            failures: watch::channel(0).0,
        }
    }

    fn last_failure_state(&self) -> std::sync::MutexGuard<'_, LastFailure> {
        self.last_failure.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The last failed attempt, kept after recoveries for the record.
    pub(crate) fn last_failure(&self) -> Option<Error> {
        self.last_failure_state().error.clone()
    }

    /// The failure of the last attempt, unless one succeeded since.
    pub(crate) fn failing(&self) -> Option<Error> {
        let state = self.last_failure_state();
        state.error.clone().filter(|_| !state.recovered)
    }

    fn record_failure(&self, err: &Error) {
        bump(&self.counters.connect_failures);
        *self.last_failure_state() = LastFailure {
            error: Some(err.clone()),
            recovered: false,
        };
        self.failures.send_modify(|generation| *generation += 1);
    }

    fn record_success(&self) {
        bump(&self.counters.connects);
        self.last_failure_state().recovered = true;
    }

    /// One connection attempt, through the gate.
    async fn connect(&self) -> Result<Connection, Error> {
        let permit = self.gate.enter().await;
        let attempt = tokio::time::timeout(self.connect_timeout, self.open());
        let result = match attempt.await {
            Ok(result) => result,
            Err(_) => Err(Error::new(
                ErrorKind::Io,
                format!(
                    "connecting to {} timed out after {:?}: check the endpoint, port and \
                     network path (security groups)",
                    self.endpoint, self.connect_timeout
                ),
            )),
        };
        drop(permit);
        match &result {
            Ok(_) => {
                self.gate.succeeded();
                self.record_success();
                tracing::debug!(endpoint = %self.endpoint, "connection opened");
            }
            Err(err) => {
                tracing::warn!(endpoint = %self.endpoint, error = %display_chain(err), "connection attempt failed");
                self.gate.failed();
                // Wakes callers waiting in `Pool::get`: after the log line.
                self.record_failure(err);
                if err.kind() == ErrorKind::AuthenticationRefused
                    && let AuthSource::Iam { refresher, .. } = &self.auth
                {
                    // The next attempt uses a newly signed token; bursts of
                    // refusals share one signing.
                    let _ = refresher.refresh_now().await;
                }
            }
        }
        result
    }

    async fn open(&self) -> Result<Connection, Error> {
        let lifecycle = self.config.lifecycle();
        match &self.transport {
            Transport::Cluster(client) => {
                // redis-rs takes the token from the refresher's stream and
                // would report a missing one as an I/O error: ask first, so
                // that a credentials failure is reported as one.
                if let AuthSource::Iam { refresher, .. } = &self.auth {
                    refresher.token().await?;
                }
                let inner = client
                    .get_async_connection()
                    .await
                    .map_err(|e| replies::to_error(e, self.auth.iam(), &self.endpoint))?;
                Ok(Connection::new(
                    Inner::Cluster(ClusterSlot::new(inner)),
                    Arc::new(Life::new(lifecycle)),
                    Arc::clone(&self.settings),
                    true,
                ))
            }
            Transport::Standalone { tls, resp2 } => {
                let protocol = if resp2.load(Ordering::Relaxed) {
                    ProtocolVersion::RESP2
                } else {
                    ProtocolVersion::RESP3
                };
                match self.open_standalone(tls.as_ref(), protocol).await {
                    Err(Refusal::NoHello) => {
                        tracing::info!(endpoint = %self.endpoint, "server has no HELLO; authenticating with AUTH");
                        resp2.store(true, Ordering::Relaxed);
                        self.open_standalone(tls.as_ref(), ProtocolVersion::RESP2)
                            .await
                            .map_err(Refusal::into_error)
                    }
                    other => other.map_err(Refusal::into_error),
                }
            }
        }
    }

    async fn open_standalone(
        &self,
        tls: Option<&TlsConnector>,
        protocol: ProtocolVersion,
    ) -> Result<Connection, Refusal> {
        let host = self.config.host();
        let tcp = TcpStream::connect((host, self.config.port()))
            .await
            .map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!(
                        "{} is unreachable: check the endpoint, port and network path \
                         (security groups, VPC)",
                        self.endpoint
                    ),
                )
                .with_source(e)
            })?;
        socket::configure(&tcp);
        let credentials: Option<(Option<String>, Zeroizing<String>)> = match &self.auth {
            AuthSource::None => None,
            AuthSource::Password { username, password } => {
                Some((username.clone(), password.clone()))
            }
            AuthSource::Iam { refresher, iam } => {
                let token = refresher.token().await?;
                Some((
                    Some(iam.user_id.as_str().to_owned()),
                    Zeroizing::new(token.expose_secret().to_owned()),
                ))
            }
        };
        let mut info = RedisConnectionInfo::default()
            .set_db(self.config.db())
            .set_protocol(protocol);
        // RESP3: HELLO 3 AUTH, by redis-rs. RESP2: AUTH, by us, first.
        if protocol == ProtocolVersion::RESP3
            && let Some((username, password)) = &credentials
        {
            if let Some(username) = username {
                info = info.set_username(username);
            }
            info = info.set_password(password.as_str());
        }
        let resp2_auth = credentials.filter(|_| protocol == ProtocolVersion::RESP2);
        match tls {
            Some(tls) => {
                let stream = tls.connect(host, tcp).await?;
                self.handshake(&info, resp2_auth, stream).await
            }
            None => self.handshake(&info, resp2_auth, tcp).await,
        }
    }

    /// Authenticates over `stream` and spawns the task that drives it.
    async fn handshake<S>(
        &self,
        info: &RedisConnectionInfo,
        resp2_auth: Option<(Option<String>, Zeroizing<String>)>,
        mut stream: S,
    ) -> Result<Connection, Refusal>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        if let Some((username, password)) = resp2_auth {
            auth_resp2(&mut stream, username.as_deref(), &password)
                .await
                .map_err(|e| replies::to_error(e, self.auth.iam(), &self.endpoint))?;
        }
        // Replies are timed per command by the connection (blocking
        // commands get their block time); the whole set-up is bounded by
        // the connect timeout.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(None)
            .set_response_timeout(None);
        let (inner, driver) = MultiplexedConnection::new_with_config(info, stream, config)
            .await
            .map_err(|e| {
                if info.protocol() == ProtocolVersion::RESP3
                    && replies::meaning(&e) == Meaning::NoHello
                {
                    Refusal::NoHello
                } else {
                    Refusal::Failed(replies::to_error(e, self.auth.iam(), &self.endpoint))
                }
            })?;
        let life = Arc::new(Life::new(self.config.lifecycle()));
        let task_life = Arc::clone(&life);
        let counters = Arc::clone(&self.counters);
        tokio::spawn(async move {
            task_life
                .drive(
                    driver,
                    || bump(&counters.recycles),
                    || bump(&counters.closed_by_server),
                )
                .await;
        });
        Ok(Connection::new(
            Inner::Standalone(inner),
            life,
            Arc::clone(&self.settings),
            info.protocol() == ProtocolVersion::RESP3,
        ))
    }
}

/// `AUTH [user] password` as the connection's first command, and its reply,
/// read here so that the server's own words (a refusal, a throttle) reach
/// the classification in `replies`.
async fn auth_resp2<S>(
    stream: &mut S,
    username: Option<&str>,
    password: &str,
) -> redis::RedisResult<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// An answer to AUTH is one short line; anything longer is not one.
    const MAX_REPLY: usize = 64 * 1024;
    let mut auth = redis::cmd("AUTH");
    if let Some(username) = username {
        auth.arg(username);
    }
    auth.arg(password);
    let packed = Zeroizing::new(auth.get_packed_command());
    stream.write_all(&packed).await?;
    stream.flush().await?;
    let mut reply = Vec::with_capacity(128);
    let mut chunk = [0u8; 512];
    while !reply.ends_with(b"\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || reply.len() + n > MAX_REPLY {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection instead of answering AUTH",
            )
            .into());
        }
        reply.extend_from_slice(&chunk[..n]);
    }
    match redis::parse_redis_value(&reply)? {
        Value::Okay => Ok(()),
        Value::SimpleString(s) if s == "OK" => Ok(()),
        Value::ServerError(err) => Err(err.into()),
        other => Err(redis::RedisError::from((
            redis::ErrorKind::Client,
            "unexpected answer to AUTH",
            format!("{other:?}"),
        ))),
    }
}

/// A failed standalone attempt: the server lacks `HELLO` (try `AUTH`), or an error.
enum Refusal {
    NoHello,
    Failed(Error),
}

impl From<Error> for Refusal {
    fn from(err: Error) -> Self {
        Refusal::Failed(err)
    }
}

impl Refusal {
    fn into_error(self) -> Error {
        match self {
            Refusal::Failed(err) => err,
            Refusal::NoHello => Error::new(
                ErrorKind::Io,
                "the server refused both HELLO and AUTH-based set-up",
            ),
        }
    }
}

impl Manager {
    pub(crate) fn new(shared: Shared) -> Self {
        Self {
            shared: Arc::new(shared),
        }
    }
}

impl bb8::ManageConnection for Manager {
    type Connection = Connection;
    type Error = Error;

    async fn connect(&self) -> Result<Connection, Error> {
        self.shared.connect().await
    }

    async fn is_valid(&self, conn: &mut Connection) -> Result<(), Error> {
        if !conn.life.check_out() {
            // Counted when it was closed (by the server, or at its deadline).
            return Err(Error::new(
                ErrorKind::Io,
                "the connection was closed (by the server, or at its deadline)",
            ));
        }
        if conn.life.is_expired() {
            self.retire(conn);
            return Err(Error::new(
                ErrorKind::Io,
                "the connection reached its deadline and is replaced",
            ));
        }
        // Re-authentication, when due, rides with the borrower's first
        // command (see `connection`): no round trip here, and nothing a
        // cancelled `get()` could abandon half-way.
        Ok(())
    }

    fn has_broken(&self, conn: &mut Connection) -> bool {
        let counters = &self.shared.counters;
        if conn.life.is_closed() {
            // Counted by whoever closed it.
            return true;
        }
        if conn.failed {
            // Failed under a command; its driver may not have noticed yet.
            if conn.life.close() {
                bump(&counters.closed_by_server);
            }
            return true;
        }
        if let Some(state) = conn.dirty() {
            if conn.life.close() {
                bump(&counters.discarded_dirty);
                tracing::debug!(endpoint = %self.shared.endpoint, state, "connection given back with session state: closed and replaced");
            }
            return true;
        }
        if conn.life.is_expired() {
            self.retire(conn);
            return true;
        }
        conn.life.check_in();
        false
    }
}

impl Manager {
    /// Closes a connection past its deadline, counting it once.
    fn retire(&self, conn: &Connection) {
        if conn.life.close() {
            bump(&self.shared.counters.recycles);
            tracing::debug!(endpoint = %self.shared.endpoint, "connection replaced at its deadline");
        }
    }
}

/// Bounds connection attempts: at most `n` at a time, and after a failure
/// the next attempt waits a jittered delay that grows with each consecutive
/// failure (200-400 ms, 400-800 ms, ... up to 10-20 s).
struct Gate {
    permits: Semaphore,
    backoff: Mutex<Backoff>,
}

#[derive(Default)]
struct Backoff {
    delays: Option<ExponentialBackoff>,
    not_before: Option<Instant>,
}

impl Gate {
    fn new(max_concurrent: usize) -> Self {
        Self {
            permits: Semaphore::new(max_concurrent),
            backoff: Mutex::new(Backoff::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Backoff> {
        self.backoff.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn enter(&self) -> SemaphorePermit<'_> {
        let permit = match self.permits.acquire().await {
            Ok(permit) => permit,
            Err(_) => unreachable!("the gate's semaphore is never closed"),
        };
        loop {
            let not_before = self.lock().not_before;
            match not_before {
                Some(at) if at > monotonic_now() => tokio::time::sleep_until(at).await,
                _ => return permit,
            }
        }
    }

    fn failed(&self) {
        let mut backoff = self.lock();
        let delay = backoff
            .delays
            .get_or_insert_with(|| {
                crate::backoff::exponential(Duration::from_millis(200), Duration::from_secs(10))
            })
            .next()
            .unwrap_or(Duration::from_secs(10));
        backoff.not_before = Some(monotonic_now() + delay);
    }

    fn succeeded(&self) {
        *self.lock() = Backoff::default();
    }
}
