//! Opening a standalone connection: TCP (with the settings of `socket`),
//! TLS, then `HELLO 3 AUTH <user> <token>` by redis-rs, or, on servers
//! without `HELLO`, `AUTH` sent and its reply read here (redis-rs would turn
//! a refusal and a throttle into the same error) before the connection is
//! set up in RESP2. The task that drives the socket is spawned here.

use std::sync::Arc;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ProtocolVersion, RedisConnectionInfo, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use zeroize::Zeroizing;

use super::{Connector, Opened, Pushes, Raw};
use crate::config::Auth;
use crate::counters::bump;
use crate::error::{Error, ErrorKind};
use crate::life::Life;
use crate::replies::{self, Meaning};
use crate::socket;
use crate::tls::TlsConnector;

impl Connector {
    pub(super) async fn open_standalone(
        &self,
        tls: Option<&TlsConnector>,
        protocol: ProtocolVersion,
        pushes: Option<Pushes>,
    ) -> Result<Opened, Refusal> {
        let credentials: Option<(Option<String>, Zeroizing<String>)> = match self.config.auth() {
            Auth::None => None,
            Auth::Password { username, password } => Some((username.clone(), password.clone())),
            Auth::Iam(iam) => {
                let token = self.iam_refresher()?.token().await?;
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
        #[cfg(feature = "test-util")]
        if let Some(fake) = &self.fake {
            return self
                .handshake(&info, resp2_auth, fake.connect(), pushes)
                .await;
        }
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
        match tls {
            Some(tls) => {
                let stream = tls.connect(tcp).await?;
                self.handshake(&info, resp2_auth, stream, pushes).await
            }
            None => self.handshake(&info, resp2_auth, tcp, pushes).await,
        }
    }

    /// Authenticates over `stream` and spawns the task that drives it.
    async fn handshake<S>(
        &self,
        info: &RedisConnectionInfo,
        resp2_auth: Option<(Option<String>, Zeroizing<String>)>,
        mut stream: S,
        pushes: Option<Pushes>,
    ) -> Result<Opened, Refusal>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        if let Some((username, password)) = resp2_auth {
            auth_resp2(&mut stream, username.as_deref(), &password)
                .await
                .map_err(|e| replies::to_error(e, self.iam(), &self.endpoint))?;
        }
        // Replies are timed per command by the connection (blocking
        // commands get their block time); the whole set-up is bounded by
        // the connect timeout.
        let mut config = AsyncConnectionConfig::new()
            .set_connection_timeout(None)
            .set_response_timeout(None);
        if let Some(pushes) = pushes {
            config = config.set_push_sender(pushes);
        }
        let (inner, driver) = MultiplexedConnection::new_with_config(info, stream, config)
            .await
            .map_err(|e| {
                if info.protocol() == ProtocolVersion::RESP3
                    && replies::meaning(&e) == Meaning::NoHello
                {
                    Refusal::NoHello
                } else {
                    Refusal::Failed(replies::to_error(e, self.iam(), &self.endpoint))
                }
            })?;
        let life = Arc::new(Life::new(self.config.lifecycle()));
        let task_life = Arc::clone(&life);
        let counters = Arc::clone(&self.counters);
        let gate = Arc::clone(&self.gate);
        tokio::spawn(async move {
            task_life
                .drive(
                    driver,
                    || bump(&counters.recycles),
                    || {
                        bump(&counters.closed_by_server);
                        gate.lost();
                    },
                )
                .await;
        });
        Ok(Opened {
            raw: Raw::Standalone(inner),
            life,
            resp3: info.protocol() == ProtocolVersion::RESP3,
        })
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
pub(super) enum Refusal {
    NoHello,
    Failed(Error),
}

impl From<Error> for Refusal {
    fn from(err: Error) -> Self {
        Refusal::Failed(err)
    }
}

impl Refusal {
    pub(super) fn into_error(self) -> Error {
        match self {
            Refusal::Failed(err) => err,
            Refusal::NoHello => Error::new(
                ErrorKind::Io,
                "the server refused both HELLO and AUTH-based set-up",
            ),
        }
    }
}
