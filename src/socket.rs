//! TCP settings of every pooled connection: no Nagle delay, and dead-peer
//! detection in well under a minute instead of the kernel's default 2 hours
//! of keepalive silence (or 15 minutes of retransmissions).
//!
//! * **Keepalive**: after 15 s without traffic, a probe every 5 s; 3
//!   unanswered probes close the socket. An idle connection to a node that
//!   vanished without a reset (a failed-over host, a dropped NAT entry) is
//!   closed within about 30 s, and the pool replaces it.
//! * **`TCP_USER_TIMEOUT`** (Linux): data left unacknowledged for 30 s
//!   closes the socket, so a command sent into a dead path fails instead of
//!   retransmitting for 15 minutes. It does not limit how long a blocking
//!   command may wait for its reply: the server acknowledges the command.

use std::time::Duration;

use redis::io::tcp::TcpSettings;
use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;

/// Silence before the first keepalive probe.
pub(crate) const KEEPALIVE_IDLE: Duration = Duration::from_secs(15);
/// Between keepalive probes.
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// Unanswered probes before the socket is closed.
pub(crate) const KEEPALIVE_RETRIES: u32 = 3;
/// Unacknowledged data closes the socket after this long (Linux).
pub(crate) const USER_TIMEOUT: Duration = Duration::from_secs(30);

fn keepalive() -> TcpKeepalive {
    let keepalive = TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL);
    #[cfg(not(any(target_os = "windows", target_os = "openbsd")))]
    let keepalive = keepalive.with_retries(KEEPALIVE_RETRIES);
    keepalive
}

/// Applies the settings to a socket this crate opened. A platform that
/// refuses one of them keeps its defaults: the connection still works.
pub(crate) fn configure(tcp: &TcpStream) {
    let _ = tcp.set_nodelay(true);
    let socket = SockRef::from(tcp);
    let _ = socket.set_tcp_keepalive(&keepalive());
    #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
    let _ = socket.set_tcp_user_timeout(Some(USER_TIMEOUT));
}

/// The same settings for the sockets redis-rs opens (cluster mode).
pub(crate) fn redis_settings() -> TcpSettings {
    let settings = TcpSettings::default()
        .set_nodelay(true)
        .set_keepalive(keepalive());
    #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
    let settings = settings.set_user_timeout(USER_TIMEOUT);
    settings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sockets_get_keepalive_and_a_user_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        configure(&tcp);
        let socket = SockRef::from(&tcp);
        assert!(socket.keepalive().unwrap());
        assert!(tcp.nodelay().unwrap());
        #[cfg(target_os = "linux")]
        {
            assert_eq!(socket.tcp_keepalive_time().unwrap(), KEEPALIVE_IDLE);
            assert_eq!(socket.tcp_keepalive_interval().unwrap(), KEEPALIVE_INTERVAL);
            assert_eq!(socket.tcp_keepalive_retries().unwrap(), KEEPALIVE_RETRIES);
            assert_eq!(socket.tcp_user_timeout().unwrap(), Some(USER_TIMEOUT));
        }
    }
}
