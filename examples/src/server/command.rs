//! The command table and dispatch: each command's Redis name, arity,
//! flags and key positions (what COMMAND reports), and its handler.
//! Handlers parse arguments, call the engine, and write one reply; every
//! change of state is an engine operation.

use std::collections::HashMap;
use std::sync::OnceLock;

use bytes::Bytes;

use super::client::Client;
use super::node::Node;
use super::{cmd_cluster, cmd_hashes, cmd_keys, cmd_server, cmd_strings};
use crate::resp::ReplyWriter;

/// What a handler asks the connection to do after its reply.
#[derive(Debug)]
pub(crate) enum Next {
    /// Nothing more.
    Done,
    /// Close the connection once the replies are written (QUIT).
    Close,
    /// An operation that waits (WAIT, REPLICAOF, SHUTDOWN, SAVE): the
    /// connection runs it, then writes its reply.
    Async(AsyncOp),
}

/// Commands that wait on something other than a shard lock.
#[derive(Debug)]
pub(crate) enum AsyncOp {
    /// WAIT numreplicas timeout-ms.
    Wait { replicas: usize, timeout_ms: u64 },
    /// WAITAOF numlocal numreplicas timeout-ms.
    WaitAof {
        local: bool,
        replicas: usize,
        timeout_ms: u64,
    },
    /// REPLICAOF NO ONE (`None`) or host port.
    ReplicaOf(Option<std::net::SocketAddr>),
    /// SHUTDOWN [NOSAVE|SAVE].
    Shutdown { save: Option<bool> },
    /// SAVE (blocking: runs off the async workers).
    Save,
    /// WAITOFFSET offset timeout-ms (read-after-write on a follower).
    WaitOffset { offset: u64, timeout_ms: u64 },
}

/// A command's reply went wrong: the text after `-` (with its code).
pub(crate) type CmdResult = Result<Next, String>;

/// The handler of a command: `args[0]` is the command name.
pub(crate) type Handler = fn(&mut Ctx<'_>, &[Bytes]) -> CmdResult;

/// What a handler works with.
pub(crate) struct Ctx<'a> {
    pub(crate) node: &'a Node,
    pub(crate) client: &'a mut Client,
    pub(crate) out: ReplyWriter<'a>,
}

/// One command as COMMAND describes it.
#[derive(Debug)]
pub(crate) struct Spec {
    /// Lower-case name.
    pub(crate) name: &'static str,
    /// Redis arity: exact when positive, a minimum when negative.
    pub(crate) arity: i32,
    pub(crate) flags: &'static [&'static str],
    pub(crate) first_key: i32,
    pub(crate) last_key: i32,
    pub(crate) step: i32,
    /// ACL categories (`@string`, ...).
    pub(crate) categories: &'static [&'static str],
    pub(crate) handler: Handler,
}

impl Spec {
    pub(crate) fn is_write(&self) -> bool {
        self.flags.contains(&"write")
    }

    /// Accepts `n` arguments (name included)?
    pub(crate) fn arity_ok(&self, n: usize) -> bool {
        let n = n as i32;
        if self.arity >= 0 {
            n == self.arity
        } else {
            n >= -self.arity
        }
    }

    /// Key positions in `args`, as COMMAND GETKEYS reports them.
    pub(crate) fn keys<'b>(&self, args: &'b [Bytes]) -> Vec<&'b Bytes> {
        if self.first_key <= 0 {
            return Vec::new();
        }
        let last = if self.last_key < 0 {
            args.len() as i32 + self.last_key
        } else {
            self.last_key
        };
        (self.first_key..=last)
            .step_by(self.step.max(1) as usize)
            .filter_map(|i| args.get(i as usize))
            .collect()
    }
}

macro_rules! spec {
    ($name:literal, $arity:expr, [$($flag:literal),*], $first:expr, $last:expr, $step:expr, [$($cat:literal),*], $handler:path) => {
        Spec {
            name: $name,
            arity: $arity,
            flags: &[$($flag),*],
            first_key: $first,
            last_key: $last,
            step: $step,
            categories: &[$($cat),*],
            handler: $handler,
        }
    };
}

/// Every command served, in one table.
pub(crate) fn table() -> &'static [Spec] {
    static TABLE: OnceLock<Vec<Spec>> = OnceLock::new();
    TABLE.get_or_init(|| {
        vec![
            // strings
            spec!(
                "get",
                2,
                ["readonly", "fast"],
                1,
                1,
                1,
                ["@read", "@string", "@fast"],
                cmd_strings::get
            ),
            spec!(
                "set",
                -3,
                ["write", "denyoom"],
                1,
                1,
                1,
                ["@write", "@string", "@slow"],
                cmd_strings::set
            ),
            spec!(
                "setnx",
                3,
                ["write", "denyoom", "fast"],
                1,
                1,
                1,
                ["@write", "@string", "@fast"],
                cmd_strings::setnx
            ),
            spec!(
                "setex",
                4,
                ["write", "denyoom"],
                1,
                1,
                1,
                ["@write", "@string", "@slow"],
                cmd_strings::setex
            ),
            spec!(
                "psetex",
                4,
                ["write", "denyoom"],
                1,
                1,
                1,
                ["@write", "@string", "@slow"],
                cmd_strings::psetex
            ),
            spec!(
                "getset",
                3,
                ["write", "denyoom", "fast"],
                1,
                1,
                1,
                ["@write", "@string", "@fast"],
                cmd_strings::getset
            ),
            spec!(
                "mget",
                -2,
                ["readonly", "fast"],
                1,
                -1,
                1,
                ["@read", "@string", "@fast"],
                cmd_strings::mget
            ),
            spec!(
                "mset",
                -3,
                ["write", "denyoom"],
                1,
                -1,
                2,
                ["@write", "@string", "@slow"],
                cmd_strings::mset
            ),
            spec!(
                "incr",
                2,
                ["write", "denyoom", "fast"],
                1,
                1,
                1,
                ["@write", "@string", "@fast"],
                cmd_strings::incr
            ),
            spec!(
                "decr",
                2,
                ["write", "denyoom", "fast"],
                1,
                1,
                1,
                ["@write", "@string", "@fast"],
                cmd_strings::decr
            ),
            spec!(
                "incrby",
                3,
                ["write", "denyoom", "fast"],
                1,
                1,
                1,
                ["@write", "@string", "@fast"],
                cmd_strings::incrby
            ),
            spec!(
                "decrby",
                3,
                ["write", "denyoom", "fast"],
                1,
                1,
                1,
                ["@write", "@string", "@fast"],
                cmd_strings::decrby
            ),
            spec!(
                "append",
                3,
                ["write", "denyoom", "fast"],
                1,
                1,
                1,
                ["@write", "@string", "@fast"],
                cmd_strings::append
            ),
            spec!(
                "strlen",
                2,
                ["readonly", "fast"],
                1,
                1,
                1,
                ["@read", "@string", "@fast"],
                cmd_strings::strlen
            ),
            spec!(
                "getdel",
                2,
                ["write", "fast"],
                1,
                1,
                1,
                ["@write", "@string", "@fast"],
                cmd_strings::getdel
            ),
            spec!(
                "getex",
                -2,
                ["write", "fast"],
                1,
                1,
                1,
                ["@write", "@string", "@fast"],
                cmd_strings::getex
            ),
            spec!(
                "getrange",
                4,
                ["readonly"],
                1,
                1,
                1,
                ["@read", "@string", "@slow"],
                cmd_strings::getrange
            ),
            spec!(
                "substr",
                4,
                ["readonly"],
                1,
                1,
                1,
                ["@read", "@string", "@slow"],
                cmd_strings::getrange
            ),
            spec!(
                "setrange",
                4,
                ["write", "denyoom"],
                1,
                1,
                1,
                ["@write", "@string", "@slow"],
                cmd_strings::setrange
            ),
            spec!(
                "incrbyfloat",
                3,
                ["write", "denyoom", "fast"],
                1,
                1,
                1,
                ["@write", "@string", "@fast"],
                cmd_strings::incrbyfloat
            ),
            spec!(
                "msetnx",
                -3,
                ["write", "denyoom"],
                1,
                -1,
                2,
                ["@write", "@string", "@slow"],
                cmd_strings::msetnx
            ),
            // keys
            spec!(
                "del",
                -2,
                ["write"],
                1,
                -1,
                1,
                ["@keyspace", "@write", "@slow"],
                cmd_keys::del
            ),
            spec!(
                "unlink",
                -2,
                ["write", "fast"],
                1,
                -1,
                1,
                ["@keyspace", "@write", "@fast"],
                cmd_keys::del
            ),
            spec!(
                "exists",
                -2,
                ["readonly", "fast"],
                1,
                -1,
                1,
                ["@keyspace", "@read", "@fast"],
                cmd_keys::exists
            ),
            spec!(
                "type",
                2,
                ["readonly", "fast"],
                1,
                1,
                1,
                ["@keyspace", "@read", "@fast"],
                cmd_keys::key_type
            ),
            spec!(
                "expire",
                -3,
                ["write", "fast"],
                1,
                1,
                1,
                ["@keyspace", "@write", "@fast"],
                cmd_keys::expire
            ),
            spec!(
                "pexpire",
                -3,
                ["write", "fast"],
                1,
                1,
                1,
                ["@keyspace", "@write", "@fast"],
                cmd_keys::expire
            ),
            spec!(
                "expireat",
                -3,
                ["write", "fast"],
                1,
                1,
                1,
                ["@keyspace", "@write", "@fast"],
                cmd_keys::expire
            ),
            spec!(
                "pexpireat",
                -3,
                ["write", "fast"],
                1,
                1,
                1,
                ["@keyspace", "@write", "@fast"],
                cmd_keys::expire
            ),
            spec!(
                "ttl",
                2,
                ["readonly", "fast"],
                1,
                1,
                1,
                ["@keyspace", "@read", "@fast"],
                cmd_keys::ttl
            ),
            spec!(
                "pttl",
                2,
                ["readonly", "fast"],
                1,
                1,
                1,
                ["@keyspace", "@read", "@fast"],
                cmd_keys::ttl
            ),
            spec!(
                "persist",
                2,
                ["write", "fast"],
                1,
                1,
                1,
                ["@keyspace", "@write", "@fast"],
                cmd_keys::persist
            ),
            spec!(
                "rename",
                3,
                ["write"],
                1,
                2,
                1,
                ["@keyspace", "@write", "@slow"],
                cmd_keys::rename
            ),
            spec!(
                "renamenx",
                3,
                ["write", "fast"],
                1,
                2,
                1,
                ["@keyspace", "@write", "@fast"],
                cmd_keys::rename
            ),
            spec!(
                "scan",
                -2,
                ["readonly"],
                0,
                0,
                0,
                ["@keyspace", "@read", "@slow"],
                cmd_keys::scan
            ),
            spec!(
                "keys",
                2,
                ["readonly"],
                0,
                0,
                0,
                ["@keyspace", "@read", "@slow", "@dangerous"],
                cmd_keys::keys
            ),
            spec!(
                "dbsize",
                1,
                ["readonly", "fast"],
                0,
                0,
                0,
                ["@keyspace", "@read", "@fast"],
                cmd_keys::dbsize
            ),
            spec!(
                "flushall",
                -1,
                ["write"],
                0,
                0,
                0,
                ["@keyspace", "@write", "@slow", "@dangerous"],
                cmd_keys::flushall
            ),
            spec!(
                "flushdb",
                -1,
                ["write"],
                0,
                0,
                0,
                ["@keyspace", "@write", "@slow", "@dangerous"],
                cmd_keys::flushall
            ),
            spec!(
                "expiretime",
                2,
                ["readonly", "fast"],
                1,
                1,
                1,
                ["@keyspace", "@read", "@fast"],
                cmd_keys::expiretime
            ),
            spec!(
                "pexpiretime",
                2,
                ["readonly", "fast"],
                1,
                1,
                1,
                ["@keyspace", "@read", "@fast"],
                cmd_keys::expiretime
            ),
            spec!(
                "touch",
                -2,
                ["readonly", "fast"],
                1,
                -1,
                1,
                ["@keyspace", "@read", "@fast"],
                cmd_keys::exists
            ),
            spec!(
                "copy",
                -3,
                ["write", "denyoom"],
                1,
                2,
                1,
                ["@keyspace", "@write", "@slow"],
                cmd_keys::copy
            ),
            spec!(
                "randomkey",
                1,
                ["readonly"],
                0,
                0,
                0,
                ["@keyspace", "@read", "@slow"],
                cmd_keys::randomkey
            ),
            spec!(
                "object",
                -2,
                ["readonly"],
                2,
                2,
                1,
                ["@keyspace", "@read", "@slow"],
                cmd_keys::object
            ),
            // hashes
            spec!(
                "hset",
                -4,
                ["write", "denyoom", "fast"],
                1,
                1,
                1,
                ["@write", "@hash", "@fast"],
                cmd_hashes::hset
            ),
            spec!(
                "hmset",
                -4,
                ["write", "denyoom", "fast"],
                1,
                1,
                1,
                ["@write", "@hash", "@fast"],
                cmd_hashes::hset
            ),
            spec!(
                "hget",
                3,
                ["readonly", "fast"],
                1,
                1,
                1,
                ["@read", "@hash", "@fast"],
                cmd_hashes::hget
            ),
            spec!(
                "hmget",
                -3,
                ["readonly", "fast"],
                1,
                1,
                1,
                ["@read", "@hash", "@fast"],
                cmd_hashes::hmget
            ),
            spec!(
                "hdel",
                -3,
                ["write", "fast"],
                1,
                1,
                1,
                ["@write", "@hash", "@fast"],
                cmd_hashes::hdel
            ),
            spec!(
                "hlen",
                2,
                ["readonly", "fast"],
                1,
                1,
                1,
                ["@read", "@hash", "@fast"],
                cmd_hashes::hlen
            ),
            spec!(
                "hexists",
                3,
                ["readonly", "fast"],
                1,
                1,
                1,
                ["@read", "@hash", "@fast"],
                cmd_hashes::hexists
            ),
            spec!(
                "hstrlen",
                3,
                ["readonly", "fast"],
                1,
                1,
                1,
                ["@read", "@hash", "@fast"],
                cmd_hashes::hstrlen
            ),
            spec!(
                "hincrby",
                4,
                ["write", "denyoom", "fast"],
                1,
                1,
                1,
                ["@write", "@hash", "@fast"],
                cmd_hashes::hincrby
            ),
            spec!(
                "hgetall",
                2,
                ["readonly"],
                1,
                1,
                1,
                ["@read", "@hash", "@slow"],
                cmd_hashes::hgetall
            ),
            spec!(
                "hkeys",
                2,
                ["readonly"],
                1,
                1,
                1,
                ["@read", "@hash", "@slow"],
                cmd_hashes::hkeys
            ),
            spec!(
                "hvals",
                2,
                ["readonly"],
                1,
                1,
                1,
                ["@read", "@hash", "@slow"],
                cmd_hashes::hvals
            ),
            spec!(
                "hscan",
                -3,
                ["readonly"],
                1,
                1,
                1,
                ["@read", "@hash", "@slow"],
                cmd_hashes::hscan
            ),
            spec!(
                "hdrain",
                3,
                ["write", "fast"],
                1,
                1,
                1,
                ["@write", "@hash", "@fast"],
                cmd_hashes::hdrain
            ),
            spec!(
                "hincrbyfloat",
                4,
                ["write", "denyoom", "fast"],
                1,
                1,
                1,
                ["@write", "@hash", "@fast"],
                cmd_hashes::hincrbyfloat
            ),
            spec!(
                "hsetnx",
                4,
                ["write", "denyoom", "fast"],
                1,
                1,
                1,
                ["@write", "@hash", "@fast"],
                cmd_hashes::hsetnx
            ),
            spec!(
                "hrandfield",
                -2,
                ["readonly"],
                1,
                1,
                1,
                ["@read", "@hash", "@slow"],
                cmd_hashes::hrandfield
            ),
            // connection and server
            spec!(
                "ping",
                -1,
                ["fast", "stale", "loading"],
                0,
                0,
                0,
                ["@fast", "@connection"],
                cmd_server::ping
            ),
            spec!(
                "echo",
                2,
                ["fast", "stale", "loading"],
                0,
                0,
                0,
                ["@fast", "@connection"],
                cmd_server::echo
            ),
            spec!(
                "quit",
                -1,
                ["fast", "stale", "loading", "noauth"],
                0,
                0,
                0,
                ["@fast", "@connection"],
                cmd_server::quit
            ),
            spec!(
                "reset",
                1,
                ["fast", "stale", "loading", "noauth"],
                0,
                0,
                0,
                ["@fast", "@connection"],
                cmd_server::reset
            ),
            spec!(
                "select",
                2,
                ["fast", "stale", "loading"],
                0,
                0,
                0,
                ["@fast", "@connection"],
                cmd_server::select
            ),
            spec!(
                "hello",
                -1,
                ["fast", "stale", "loading", "noauth"],
                0,
                0,
                0,
                ["@fast", "@connection"],
                cmd_server::hello
            ),
            spec!(
                "auth",
                -2,
                ["fast", "stale", "loading", "noauth"],
                0,
                0,
                0,
                ["@fast", "@connection"],
                cmd_server::auth
            ),
            spec!(
                "client",
                -2,
                ["stale", "loading"],
                0,
                0,
                0,
                ["@slow", "@connection"],
                cmd_server::client
            ),
            spec!(
                "info",
                -1,
                ["stale", "loading"],
                0,
                0,
                0,
                ["@slow", "@dangerous"],
                cmd_server::info
            ),
            spec!(
                "config",
                -2,
                ["admin", "stale", "loading"],
                0,
                0,
                0,
                ["@admin", "@slow", "@dangerous"],
                cmd_server::config
            ),
            spec!(
                "command",
                -1,
                ["stale", "loading"],
                0,
                0,
                0,
                ["@slow", "@connection"],
                cmd_server::command
            ),
            spec!(
                "time",
                1,
                ["fast", "stale", "loading"],
                0,
                0,
                0,
                ["@fast"],
                cmd_server::time
            ),
            spec!(
                "save",
                1,
                ["admin", "noscript"],
                0,
                0,
                0,
                ["@admin", "@slow", "@dangerous"],
                cmd_server::save
            ),
            spec!(
                "bgsave",
                -1,
                ["admin", "noscript"],
                0,
                0,
                0,
                ["@admin", "@slow", "@dangerous"],
                cmd_server::bgsave
            ),
            spec!(
                "lastsave",
                1,
                ["fast", "stale", "loading"],
                0,
                0,
                0,
                ["@fast", "@admin", "@dangerous"],
                cmd_server::lastsave
            ),
            spec!(
                "shutdown",
                -1,
                ["admin", "noscript", "loading", "stale"],
                0,
                0,
                0,
                ["@admin", "@slow", "@dangerous"],
                cmd_server::shutdown
            ),
            spec!(
                "slowlog",
                -2,
                ["admin", "loading", "stale"],
                0,
                0,
                0,
                ["@admin", "@slow", "@dangerous"],
                cmd_server::slowlog
            ),
            spec!(
                "role",
                1,
                ["noscript", "loading", "stale", "fast"],
                0,
                0,
                0,
                ["@admin", "@fast", "@dangerous"],
                cmd_server::role
            ),
            spec!(
                "wait",
                3,
                ["noscript"],
                0,
                0,
                0,
                ["@slow", "@connection"],
                cmd_server::wait
            ),
            spec!(
                "waitaof",
                4,
                ["noscript"],
                0,
                0,
                0,
                ["@slow", "@connection"],
                cmd_server::waitaof
            ),
            spec!(
                "replicaof",
                3,
                ["admin", "noscript", "stale"],
                0,
                0,
                0,
                ["@admin", "@slow", "@dangerous"],
                cmd_server::replicaof
            ),
            spec!(
                "slaveof",
                3,
                ["admin", "noscript", "stale"],
                0,
                0,
                0,
                ["@admin", "@slow", "@dangerous"],
                cmd_server::replicaof
            ),
            spec!(
                "lastwriteoffset",
                1,
                ["fast", "stale"],
                0,
                0,
                0,
                ["@fast", "@connection"],
                cmd_server::lastwriteoffset
            ),
            spec!(
                "waitoffset",
                3,
                ["stale"],
                0,
                0,
                0,
                ["@slow", "@connection"],
                cmd_server::waitoffset
            ),
            spec!(
                "multi",
                1,
                ["noscript", "loading", "stale", "fast"],
                0,
                0,
                0,
                ["@fast", "@transaction"],
                cmd_server::multi
            ),
            spec!(
                "exec",
                1,
                ["noscript", "loading", "stale"],
                0,
                0,
                0,
                ["@slow", "@transaction"],
                cmd_server::exec
            ),
            spec!(
                "acl",
                -2,
                ["admin", "noscript", "loading", "stale"],
                0,
                0,
                0,
                ["@admin", "@slow", "@dangerous"],
                cmd_server::acl
            ),
            spec!(
                "watch",
                -2,
                ["noscript", "loading", "stale", "fast"],
                1,
                -1,
                1,
                ["@fast", "@transaction"],
                cmd_server::watch
            ),
            spec!(
                "unwatch",
                1,
                ["noscript", "loading", "stale", "fast"],
                0,
                0,
                0,
                ["@fast", "@transaction"],
                cmd_server::unwatch
            ),
            spec!(
                "discard",
                1,
                ["noscript", "loading", "stale", "fast"],
                0,
                0,
                0,
                ["@fast", "@transaction"],
                cmd_server::discard
            ),
            // cluster mode
            spec!("cluster", -2, ["stale"], 0, 0, 0, ["@slow"], cmd_cluster::cluster),
            spec!(
                "asking",
                1,
                ["fast"],
                0,
                0,
                0,
                ["@fast", "@connection"],
                cmd_cluster::asking
            ),
            spec!(
                "readonly",
                1,
                ["loading", "stale", "fast"],
                0,
                0,
                0,
                ["@fast", "@connection"],
                cmd_cluster::readonly
            ),
            spec!(
                "readwrite",
                1,
                ["loading", "stale", "fast"],
                0,
                0,
                0,
                ["@fast", "@connection"],
                cmd_cluster::readwrite
            ),
        ]
    })
}

/// The spec of `name` (any case).
pub(crate) fn lookup(name: &[u8]) -> Option<&'static Spec> {
    static INDEX: OnceLock<HashMap<&'static str, usize>> = OnceLock::new();
    let index = INDEX.get_or_init(|| table().iter().enumerate().map(|(i, s)| (s.name, i)).collect());
    if name.len() > 32 {
        return None;
    }
    let mut lower = [0u8; 32];
    let lower = &mut lower[..name.len()];
    lower.copy_from_slice(name);
    lower.make_ascii_lowercase();
    let name = std::str::from_utf8(lower).ok()?;
    index.get(name).map(|&i| &table()[i])
}

/// Redis' text for a command that does not exist.
pub(crate) fn unknown_command(args: &[Bytes]) -> String {
    let mut s = format!(
        "ERR unknown command '{}', with args beginning with: ",
        String::from_utf8_lossy(&args[0][..args[0].len().min(128)])
    );
    for a in &args[1..] {
        s.push_str(&format!("'{}' ", String::from_utf8_lossy(&a[..a.len().min(128)])));
    }
    s
}

/// Redis' text for a wrong argument count.
pub(crate) fn wrong_arity(name: &str) -> String {
    format!("ERR wrong number of arguments for '{name}' command")
}

/// The Redis text of an engine error in command `cmd`.
pub(crate) fn engine_error(e: ringkv::Error, cmd: &str) -> String {
    match e {
        ringkv::Error::InvalidExpire => format!("ERR invalid expire time in '{cmd}' command"),
        ringkv::Error::ValueTooLarge { .. } => "ERR string exceeds maximum allowed size (proto-max-bulk-len)".into(),
        ringkv::Error::InvalidArgument(m) if m.starts_with("wrong number") => wrong_arity(cmd),
        // The leader lease's fence closed under the write: like a follower
        // (clients look the primary up again).
        ringkv::Error::NoReplicas(r) if r == super::fence::FENCED => ringkv::Error::ReadOnly.to_string(),
        other => {
            let text = other.to_string();
            // Engine errors that Redis users know carry their code already.
            let coded = text
                .split(' ')
                .next()
                .is_some_and(|w| w.len() > 1 && w.bytes().all(|b| b.is_ascii_uppercase()));
            if coded {
                text
            } else {
                format!("ERR {text}")
            }
        }
    }
}

/// A value to store, copied out of the connection's read buffer: the
/// parser's arguments are slices of that buffer, and a stored slice would
/// keep the whole buffer alive for as long as the key lives. (Keys and
/// hash fields are copied by the engine; a value up to the engine's inline
/// size is copied there too, but longer ones are kept as given.)
pub(crate) fn owned(b: &Bytes) -> Bytes {
    Bytes::copy_from_slice(b)
}

/// An integer argument, read as Redis reads it.
pub(crate) fn int_arg(a: &[u8]) -> Result<i64, String> {
    ringkv::parse_i64(a).ok_or_else(|| "ERR value is not an integer or out of range".to_string())
}

/// A non-negative integer argument (counts, timeouts).
pub(crate) fn uint_arg(a: &[u8], what: &str) -> Result<u64, String> {
    match ringkv::parse_i64(a) {
        Some(v) if v >= 0 => Ok(v as u64),
        Some(_) => Err(format!("ERR {what} is negative")),
        None => Err("ERR value is not an integer or out of range".to_string()),
    }
}

/// Case-insensitive option name check.
pub(crate) fn is(a: &[u8], name: &str) -> bool {
    a.eq_ignore_ascii_case(name.as_bytes())
}

pub(crate) const SYNTAX: &str = "ERR syntax error";

impl Ctx<'_> {
    /// Counts a keyspace hit or miss (INFO stats).
    pub(crate) fn hit(&mut self, found: bool) {
        let p = &mut self.client.pending;
        if found {
            p.hits += 1;
        } else {
            p.misses += 1;
        }
    }
}
