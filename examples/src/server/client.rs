//! One connection's state: protocol version, authentication, name, and a
//! transaction being queued.

use bytes::Bytes;

use crate::resp::Protocol;

/// The state of one client connection.
#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) id: u64,
    pub(crate) proto: Protocol,
    pub(crate) authenticated: bool,
    pub(crate) user: String,
    pub(crate) name: String,
    /// Commands queued since MULTI; `None` outside a transaction.
    pub(crate) multi: Option<Vec<Vec<Bytes>>>,
    /// A command failed to queue: EXEC answers EXECABORT.
    pub(crate) multi_failed: bool,
    /// The log offset just after this client's last write (WAIT, LASTWRITEOFFSET).
    pub(crate) last_write_offset: u64,
}

impl Client {
    pub(crate) fn new(id: u64, needs_auth: bool) -> Client {
        Client {
            id,
            proto: Protocol::Resp2,
            authenticated: !needs_auth,
            user: "default".into(),
            name: String::new(),
            multi: None,
            multi_failed: false,
            last_write_offset: 0,
        }
    }
}
