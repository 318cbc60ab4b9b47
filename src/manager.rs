//! The bb8 connection manager: a thin adapter over the [`Connector`] and the
//! connection's life.
//!
//! * **connect**: one attempt through the connector (gate, timeout, record).
//! * **is_valid** (checkout): closed or past its deadline is an error (bb8
//!   drops it and tries another). A connection past its re-auth point
//!   re-authenticates with the borrower's first command (see `connection`):
//!   no round trip here, and nothing a cancelled `get()` could abandon
//!   half-way.
//! * **has_broken** (check-in): closed, failed, left with session state
//!   (`MULTI`, `WATCH`, another database, ...: counted as `discarded_dirty`),
//!   or past its deadline.

use std::fmt;
use std::sync::Arc;

use crate::connection::Connection;
use crate::connector::Connector;
use crate::counters::bump;
use crate::error::{Error, ErrorKind};

/// The [`bb8::ManageConnection`] behind [`Pool`](crate::Pool). Build it
/// through [`Pool::builder`](crate::Pool::builder).
#[derive(Clone)]
pub struct Manager {
    pub(crate) connector: Arc<Connector>,
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager")
            .field("connector", &self.connector)
            .finish()
    }
}

impl Manager {
    pub(crate) fn new(connector: Connector) -> Self {
        Self {
            connector: Arc::new(connector),
        }
    }

    /// Closes a connection past its deadline, counting it once.
    fn retire(&self, conn: &Connection) {
        if conn.life.close() {
            bump(&self.connector.counters().recycles);
            tracing::debug!(endpoint = %self.connector.endpoint(), "connection replaced at its deadline");
        }
    }
}

impl bb8::ManageConnection for Manager {
    type Connection = Connection;
    type Error = Error;

    async fn connect(&self) -> Result<Connection, Error> {
        self.connector.connect().await
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
        Ok(())
    }

    fn has_broken(&self, conn: &mut Connection) -> bool {
        let counters = self.connector.counters();
        if conn.life.is_closed() {
            // Counted by whoever closed it.
            return true;
        }
        if conn.failed {
            // Failed under a command; its driver may not have noticed yet.
            if conn.life.close() {
                self.connector.lost();
            }
            return true;
        }
        if let Some(state) = conn.dirty() {
            if conn.life.close() {
                bump(&counters.discarded_dirty);
                tracing::debug!(endpoint = %self.connector.endpoint(), state, "connection given back with session state: closed and replaced");
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
