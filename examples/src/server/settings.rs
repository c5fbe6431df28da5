//! The settings `CONFIG SET` changes while the server runs: the idle
//! `timeout`, `maxclients`, the SLOWLOG's threshold and length,
//! `requirepass`, and the engine's `maxmemory` and `maxmemory-policy`.
//! Everything else `CONFIG GET` shows is fixed at start (`port`, `dir`,
//! `save`, ...) and `CONFIG SET` refuses it as Redis refuses an immutable
//! setting.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use ringkv::EvictionPolicy;

use super::config::ServerConfig;
use super::node::Node;

/// The settings that can change at run time, read with one atomic load
/// where a connection needs them.
#[derive(Debug)]
pub(crate) struct RuntimeSettings {
    timeout: AtomicU64,
    maxclients: AtomicUsize,
    slowlog_log_slower_than: AtomicU64,
    slowlog_max_len: AtomicUsize,
}

impl RuntimeSettings {
    /// The values the server started with.
    pub(crate) fn new(config: &ServerConfig) -> RuntimeSettings {
        RuntimeSettings {
            timeout: AtomicU64::new(config.timeout),
            maxclients: AtomicUsize::new(config.maxclients),
            slowlog_log_slower_than: AtomicU64::new(config.slowlog_log_slower_than),
            slowlog_max_len: AtomicUsize::new(config.slowlog_max_len),
        }
    }

    /// Seconds a client may stay idle (0: forever).
    pub(crate) fn timeout(&self) -> u64 {
        self.timeout.load(Ordering::Relaxed)
    }

    /// Most clients connected at once.
    pub(crate) fn maxclients(&self) -> usize {
        self.maxclients.load(Ordering::Relaxed)
    }

    /// Microseconds from which a command enters the SLOWLOG.
    pub(crate) fn slowlog_log_slower_than(&self) -> u64 {
        self.slowlog_log_slower_than.load(Ordering::Relaxed)
    }

    /// Entries the SLOWLOG keeps.
    pub(crate) fn slowlog_max_len(&self) -> usize {
        self.slowlog_max_len.load(Ordering::Relaxed)
    }
}

/// Settings `CONFIG GET` shows that only a restart changes.
const IMMUTABLE: &[&str] = &[
    "bind",
    "port",
    "dir",
    "save",
    "appendonly",
    "databases",
    "maxmemory-samples",
    "protected-mode",
    "proto-max-bulk-len",
    "client-query-buffer-limit",
    "replica-read-only",
];

/// `CONFIG SET name value` for one pair, with Redis 7's error texts.
pub(crate) fn config_set(node: &Node, name: &str, value: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(value);
    let bad = |why: &str| format!("ERR CONFIG SET failed (possibly related to argument '{name}') - {why}");
    let number = || -> Result<u64, String> {
        text.trim()
            .parse::<u64>()
            .map_err(|_| bad("argument couldn't be parsed into an integer"))
    };
    let s = &node.settings;
    match name {
        "timeout" => s.timeout.store(number()?, Ordering::Relaxed),
        "maxclients" => {
            let n = number()?;
            if n == 0 {
                return Err(bad("argument must be between 1 and 4294967295 inclusive"));
            }
            s.maxclients.store(n as usize, Ordering::Relaxed);
        }
        "slowlog-log-slower-than" => s.slowlog_log_slower_than.store(number()?, Ordering::Relaxed),
        "slowlog-max-len" => {
            let n = number()? as usize;
            s.slowlog_max_len.store(n, Ordering::Relaxed);
            node.slowlog.lock().truncate(n);
        }
        "requirepass" => node.set_requirepass(&text),
        "maxmemory" => {
            let bytes = parse_memory(&text).ok_or_else(|| bad("argument must be a memory value"))?;
            let (_, policy) = node.engine.memory_limit();
            node.engine.set_memory_limit(bytes, policy);
        }
        "maxmemory-policy" => {
            let policy = parse_policy(&text).ok_or_else(|| {
                bad("argument(s) must be one of the following: noeviction, allkeys-lru, volatile-ttl")
            })?;
            let (bytes, _) = node.engine.memory_limit();
            node.engine.set_memory_limit(bytes, policy);
        }
        _ if IMMUTABLE.contains(&name) => return Err(bad("can't set immutable config")),
        _ => {
            return Err(format!(
                "ERR Unknown option or number of arguments for CONFIG SET - '{name}'"
            ))
        }
    }
    tracing::info!(setting = name, "CONFIG SET");
    Ok(())
}

/// The policy's name as Redis spells it.
pub(crate) fn policy_name(policy: EvictionPolicy) -> &'static str {
    match policy {
        EvictionPolicy::AllkeysLru => "allkeys-lru",
        EvictionPolicy::VolatileTtl => "volatile-ttl",
        _ => "noeviction",
    }
}

fn parse_policy(s: &str) -> Option<EvictionPolicy> {
    [
        EvictionPolicy::Noeviction,
        EvictionPolicy::AllkeysLru,
        EvictionPolicy::VolatileTtl,
    ]
    .into_iter()
    .find(|&p| s.eq_ignore_ascii_case(policy_name(p)))
}

/// A memory value as Redis' config reads it: bytes, or a number with a
/// unit `k` `kb` `m` `mb` `g` `gb` (`k` is 1000, `kb` 1024), any case.
pub(crate) fn parse_memory(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(digits);
    let n: u64 = n.parse().ok()?;
    let mul: u64 = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(mul)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_values_parse_as_redis_reads_them() {
        assert_eq!(parse_memory("0"), Some(0));
        assert_eq!(parse_memory("100"), Some(100));
        assert_eq!(parse_memory("1k"), Some(1000));
        assert_eq!(parse_memory("1KB"), Some(1024));
        assert_eq!(parse_memory("3mb"), Some(3 << 20));
        assert_eq!(parse_memory("2G"), Some(2_000_000_000));
        assert_eq!(parse_memory("2gb"), Some(2 << 30));
        assert_eq!(parse_memory("-1"), None);
        assert_eq!(parse_memory("1tb"), None);
        assert_eq!(parse_memory("mb"), None);
        assert_eq!(parse_memory("99999999999999999999gb"), None);
    }

    #[test]
    fn policies_parse_by_their_redis_names() {
        assert_eq!(parse_policy("allkeys-lru"), Some(EvictionPolicy::AllkeysLru));
        assert_eq!(parse_policy("VOLATILE-TTL"), Some(EvictionPolicy::VolatileTtl));
        assert_eq!(parse_policy("noeviction"), Some(EvictionPolicy::Noeviction));
        assert_eq!(parse_policy("allkeys-lfu"), None);
    }
}
