//! One connection's state: protocol version, authentication, name, and a
//! transaction being queued.

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use super::node::{ClientInfo, Node};
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
    /// Keys watched since WATCH (cleared by EXEC, DISCARD, UNWATCH, RESET).
    pub(crate) watch: Option<super::txn::Watch>,
    /// Cluster mode: the next command may serve a slot being imported (ASKING).
    pub(crate) asking: bool,
    /// Cluster mode: reads may be served by a replica (READONLY).
    pub(crate) readonly: bool,
    /// What CLIENT LIST shows of this client (shared with the registry).
    pub(crate) info: Arc<Mutex<ClientInfo>>,
    /// Counters for INFO stats, added to the node's once per batch of
    /// pipelined requests rather than per command.
    pub(crate) pending: Pending,
}

/// Per-connection counters not yet added to the node's.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    pub(crate) commands: u64,
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    pub(crate) errors: u64,
}

impl Pending {
    /// Adds the counts to the node's and starts over.
    pub(crate) fn flush(&mut self, node: &Node) {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &node.counters;
        for (counter, n) in [
            (&c.commands_processed, self.commands),
            (&c.keyspace_hits, self.hits),
            (&c.keyspace_misses, self.misses),
            (&c.error_replies, self.errors),
        ] {
            if n > 0 {
                counter.fetch_add(n, Relaxed);
            }
        }
        *self = Pending::default();
    }
}

impl Client {
    pub(crate) fn new(id: u64, needs_auth: bool, info: Arc<Mutex<ClientInfo>>) -> Client {
        Client {
            id,
            proto: Protocol::Resp2,
            authenticated: !needs_auth,
            user: "default".into(),
            name: String::new(),
            multi: None,
            multi_failed: false,
            last_write_offset: 0,
            info,
            pending: Pending::default(),
            watch: None,
            asking: false,
            readonly: false,
        }
    }
}
