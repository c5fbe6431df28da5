//! A blocking client for etcd's v3 API through its JSON gateway
//! (`POST /v3/kv/range` ...; keys and values base64, 64-bit integers as
//! strings), which etcd 3.4 serves on the client port. Every call has a
//! timeout and a bound on the answer's size; a hostile or garbage answer
//! is an [`EtcdError`], never a panic.
//!
//! ```no_run
//! use ringkv_examples::coord::{Compare, Etcd, Op};
//! # fn demo() -> Result<(), ringkv_examples::coord::EtcdError> {
//! let etcd = Etcd::new("http://127.0.0.1:2379")?;
//! let lease = etcd.lease_grant(2)?;
//! // Take a key only if nobody holds it, bound to the lease.
//! let txn = etcd.txn(
//!     &[Compare::create_revision(b"/ringkv/demo", 0)],
//!     &[Op::put(b"/ringkv/demo", b"me", Some(lease.id))],
//!     &[Op::get(b"/ringkv/demo")],
//! )?;
//! println!("took it: {} at revision {}", txn.succeeded, txn.revision);
//! etcd.lease_keepalive(lease.id)?;
//! # Ok(()) }
//! ```

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::error::EtcdError;
use super::http;

/// A lease's id.
pub type LeaseId = i64;

/// One key as etcd stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
    /// The revision that created the key (0 if absent).
    pub create_revision: i64,
    /// The revision of its last change.
    pub mod_revision: i64,
    /// Changes since creation (1 after the put that created it).
    pub version: i64,
    /// The lease it is attached to (0: none).
    pub lease: LeaseId,
}

/// The keys of a range read and the store's revision when it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// The keys, in key order.
    pub kvs: Vec<KeyValue>,
    /// The store's revision at the read.
    pub revision: i64,
}

/// A granted lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// Its id.
    pub id: LeaseId,
    /// Its time to live in seconds, as etcd granted it.
    pub ttl: i64,
}

/// What a [`Compare`] looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The key's create revision (0: the key does not exist).
    CreateRevision(i64),
    /// The key's mod revision.
    ModRevision(i64),
    /// The key's version.
    Version(i64),
    /// The key's value.
    Value(Vec<u8>),
}

/// A comparison's operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// `==`
    Equal,
    /// `!=`
    NotEqual,
    /// `>`
    Greater,
    /// `<`
    Less,
}

/// One condition of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    /// The key compared.
    pub key: Vec<u8>,
    /// What of it, against which value.
    pub target: Target,
    /// How.
    pub op: CompareOp,
}

impl Compare {
    /// `create_revision(key) == revision` (0: the key is absent).
    pub fn create_revision(key: &[u8], revision: i64) -> Compare {
        Compare {
            key: key.to_vec(),
            target: Target::CreateRevision(revision),
            op: CompareOp::Equal,
        }
    }

    /// `mod_revision(key) == revision`.
    pub fn mod_revision(key: &[u8], revision: i64) -> Compare {
        Compare {
            key: key.to_vec(),
            target: Target::ModRevision(revision),
            op: CompareOp::Equal,
        }
    }

    /// `value(key) == value`.
    pub fn value(key: &[u8], value: &[u8]) -> Compare {
        Compare {
            key: key.to_vec(),
            target: Target::Value(value.to_vec()),
            op: CompareOp::Equal,
        }
    }
}

/// One operation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Reads a key, or every key under a prefix.
    Range {
        /// The key or prefix.
        key: Vec<u8>,
        /// Whether `key` is a prefix.
        prefix: bool,
    },
    /// Writes a key, optionally bound to a lease.
    Put {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
        /// The lease (`None`: the key lives until deleted).
        lease: Option<LeaseId>,
    },
    /// Deletes a key, or every key under a prefix.
    Delete {
        /// The key or prefix.
        key: Vec<u8>,
        /// Whether `key` is a prefix.
        prefix: bool,
    },
}

impl Op {
    /// Reads `key`.
    pub fn get(key: &[u8]) -> Op {
        Op::Range {
            key: key.to_vec(),
            prefix: false,
        }
    }

    /// Writes `key`.
    pub fn put(key: &[u8], value: &[u8], lease: Option<LeaseId>) -> Op {
        Op::Put {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
        }
    }

    /// Deletes `key`.
    pub fn delete(key: &[u8]) -> Op {
        Op::Delete {
            key: key.to_vec(),
            prefix: false,
        }
    }
}

/// The result of one [`Op`] in a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    /// The keys a [`Op::Range`] read.
    Range(Vec<KeyValue>),
    /// The revision a [`Op::Put`] wrote at.
    Put {
        /// The revision.
        revision: i64,
    },
    /// How many keys a [`Op::Delete`] removed.
    Delete {
        /// The count.
        deleted: i64,
    },
}

/// A transaction's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResult {
    /// Whether every comparison held (the success branch ran).
    pub succeeded: bool,
    /// The store's revision after the transaction.
    pub revision: i64,
    /// One result per operation of the branch that ran.
    pub results: Vec<OpResult>,
}

/// A client of one etcd cluster. Cheap to clone; each call opens its own
/// connection (loopback and LAN etcd: a connection costs far less than
/// the Raft write behind a put).
#[derive(Debug, Clone)]
pub struct Etcd {
    endpoints: Vec<SocketAddr>,
    timeout: Duration,
    max_response: usize,
}

/// Default per-call timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default bound on an answer's size (a range over a shard's nodes or the
/// slot map is a few KB).
pub const DEFAULT_MAX_RESPONSE: usize = 4 << 20;

impl Etcd {
    /// A client of the endpoints in `urls`: `http://host:port`, several
    /// separated by commas (tried in order when one cannot be reached).
    pub fn new(urls: &str) -> Result<Etcd, EtcdError> {
        let mut endpoints = Vec::new();
        for url in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
            let bad = |why| EtcdError::Url {
                url: url.to_string(),
                why,
            };
            if url.starts_with("https://") {
                return Err(bad("TLS to etcd is not supported; use http:// on a trusted network"));
            }
            let hostport = url.strip_prefix("http://").unwrap_or(url);
            let hostport = hostport.strip_suffix('/').unwrap_or(hostport);
            if hostport.contains('/') {
                return Err(bad("expected http://host:port"));
            }
            let addrs = hostport
                .to_socket_addrs()
                .map_err(|_| bad("cannot resolve host:port"))?;
            endpoints.extend(addrs);
        }
        if endpoints.is_empty() {
            return Err(EtcdError::Url {
                url: urls.to_string(),
                why: "no endpoint",
            });
        }
        Ok(Etcd {
            endpoints,
            timeout: DEFAULT_TIMEOUT,
            max_response: DEFAULT_MAX_RESPONSE,
        })
    }

    /// The same client with another per-call timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Etcd {
        self.timeout = timeout;
        self
    }

    /// The same client with another bound on an answer's size.
    pub fn with_max_response(mut self, bytes: usize) -> Etcd {
        self.max_response = bytes;
        self
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The endpoints, in the order tried.
    pub fn endpoints(&self) -> &[SocketAddr] {
        &self.endpoints
    }

    fn call(&self, path: &str, body: &Value) -> Result<Value, EtcdError> {
        let bytes = serde_json::to_vec(body).map_err(|e| EtcdError::Json(e.to_string()))?;
        let mut last = None;
        for &addr in &self.endpoints {
            match http::request(addr, "POST", path, &bytes, self.timeout, self.max_response) {
                Ok(r) => return decode(r),
                Err(e @ EtcdError::Connect { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(EtcdError::Http("no endpoint")))
    }

    /// Whether etcd answers `/health` with `"health":"true"`.
    pub fn healthy(&self) -> bool {
        self.endpoints.iter().any(|&addr| {
            http::request(addr, "GET", "/health", b"", self.timeout, 64 << 10)
                .ok()
                .filter(|r| r.status == 200)
                .and_then(|r| serde_json::from_slice::<Value>(&r.body).ok())
                .is_some_and(|v| v.get("health").and_then(Value::as_str) == Some("true"))
        })
    }

    /// Reads `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, EtcdError> {
        let v = self.call("/v3/kv/range", &range_body(key, false))?;
        Ok(kvs(&v)?.into_iter().next())
    }

    /// Reads every key under `prefix` (in key order) and the revision.
    pub fn range_prefix(&self, prefix: &[u8]) -> Result<Range, EtcdError> {
        let v = self.call("/v3/kv/range", &range_body(prefix, true))?;
        Ok(Range {
            kvs: kvs(&v)?,
            revision: header_revision(&v)?,
        })
    }

    /// Writes `key` (bound to `lease` if given); the revision of the write.
    pub fn put(&self, key: &[u8], value: &[u8], lease: Option<LeaseId>) -> Result<i64, EtcdError> {
        let v = self.call("/v3/kv/put", &put_body(key, value, lease))?;
        header_revision(&v)
    }

    /// Deletes `key`; how many keys were deleted (0 or 1).
    pub fn delete(&self, key: &[u8]) -> Result<i64, EtcdError> {
        let v = self.call("/v3/kv/deleterange", &json!({ "key": B64.encode(key) }))?;
        int(&v, "deleted")
    }

    /// Deletes every key under `prefix`; how many.
    pub fn delete_prefix(&self, prefix: &[u8]) -> Result<i64, EtcdError> {
        let v = self.call(
            "/v3/kv/deleterange",
            &json!({ "key": B64.encode(prefix), "range_end": B64.encode(prefix_end(prefix)) }),
        )?;
        int(&v, "deleted")
    }

    /// If every comparison in `compare` holds, runs `success`, else
    /// `failure`, atomically.
    pub fn txn(&self, compare: &[Compare], success: &[Op], failure: &[Op]) -> Result<TxnResult, EtcdError> {
        let body = json!({
            "compare": compare.iter().map(compare_json).collect::<Vec<_>>(),
            "success": success.iter().map(op_json).collect::<Vec<_>>(),
            "failure": failure.iter().map(op_json).collect::<Vec<_>>(),
        });
        let v = self.call("/v3/kv/txn", &body)?;
        let succeeded = v.get("succeeded").and_then(Value::as_bool).unwrap_or(false);
        let mut results = Vec::new();
        if let Some(list) = v.get("responses") {
            let list = list.as_array().ok_or_else(|| bad("responses is not an array"))?;
            for r in list {
                results.push(op_result(r)?);
            }
        }
        Ok(TxnResult {
            succeeded,
            revision: header_revision(&v)?,
            results,
        })
    }

    /// Grants a lease of `ttl` seconds.
    pub fn lease_grant(&self, ttl: i64) -> Result<Lease, EtcdError> {
        let v = self.call("/v3/lease/grant", &json!({ "TTL": ttl.to_string() }))?;
        if let Some(e) = v.get("error").and_then(Value::as_str).filter(|e| !e.is_empty()) {
            return Err(EtcdError::Status {
                status: 200,
                code: 0,
                message: e.to_string(),
            });
        }
        Ok(Lease {
            id: int(&v, "ID")?,
            ttl: int(&v, "TTL")?,
        })
    }

    /// Renews lease `id`: its new TTL in seconds, or `None` if it has
    /// expired (or never existed).
    pub fn lease_keepalive(&self, id: LeaseId) -> Result<Option<i64>, EtcdError> {
        let v = self.call("/v3/lease/keepalive", &json!({ "ID": id.to_string() }))?;
        // A stream of one message: `{"result": {...}}`.
        let r = v
            .get("result")
            .ok_or_else(|| bad("no result in the keepalive answer"))?;
        let ttl = int(r, "TTL")?;
        Ok((ttl > 0).then_some(ttl))
    }

    /// Ends lease `id` now, deleting the keys bound to it.
    pub fn lease_revoke(&self, id: LeaseId) -> Result<(), EtcdError> {
        self.call("/v3/lease/revoke", &json!({ "ID": id.to_string() }))?;
        Ok(())
    }
}

fn bad(why: &str) -> EtcdError {
    EtcdError::Json(why.to_string())
}

/// The JSON of an answer, or the error it carries.
fn decode(r: http::Response) -> Result<Value, EtcdError> {
    let v: Value = serde_json::from_slice(&r.body).map_err(|e| EtcdError::Json(e.to_string()))?;
    if r.status != 200 {
        return Err(EtcdError::Status {
            status: r.status,
            code: v.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: v
                .get("message")
                .or_else(|| v.get("error"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .chars()
                .take(512)
                .collect(),
        });
    }
    if !v.is_object() {
        return Err(bad("the answer is not an object"));
    }
    // A stream's error arrives in-band as `{"error": {...}}`.
    if let Some(e) = v.get("error").filter(|e| e.is_object()) {
        return Err(EtcdError::Status {
            status: r.status,
            code: e.get("grpc_code").and_then(Value::as_i64).unwrap_or(0),
            message: e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .chars()
                .take(512)
                .collect(),
        });
    }
    Ok(v)
}

/// An int64 field: etcd's gateway writes them as strings, omits zeros.
fn int(v: &Value, field: &str) -> Result<i64, EtcdError> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::String(s)) => s
            .parse()
            .map_err(|_| EtcdError::Json(format!("{field} is not an integer"))),
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| EtcdError::Json(format!("{field} is not an int64"))),
        Some(_) => Err(EtcdError::Json(format!("{field} is not an integer"))),
    }
}

fn bytes(v: &Value, field: &str) -> Result<Vec<u8>, EtcdError> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => B64
            .decode(s)
            .map_err(|_| EtcdError::Json(format!("{field} is not base64"))),
        Some(_) => Err(EtcdError::Json(format!("{field} is not a string"))),
    }
}

fn header_revision(v: &Value) -> Result<i64, EtcdError> {
    let h = v.get("header").ok_or_else(|| bad("no header"))?;
    int(h, "revision")
}

fn kv(v: &Value) -> Result<KeyValue, EtcdError> {
    Ok(KeyValue {
        key: bytes(v, "key")?,
        value: bytes(v, "value")?,
        create_revision: int(v, "create_revision")?,
        mod_revision: int(v, "mod_revision")?,
        version: int(v, "version")?,
        lease: int(v, "lease")?,
    })
}

fn kvs(v: &Value) -> Result<Vec<KeyValue>, EtcdError> {
    match v.get("kvs") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(list)) => list.iter().map(kv).collect(),
        Some(_) => Err(bad("kvs is not an array")),
    }
}

/// The end of the range of keys starting with `prefix`: the prefix with
/// its last byte below 0xff incremented (`\0`: to the end of the keyspace).
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn range_body(key: &[u8], prefix: bool) -> Value {
    let mut m = Map::new();
    m.insert("key".into(), B64.encode(key).into());
    if prefix {
        m.insert("range_end".into(), B64.encode(prefix_end(key)).into());
    }
    Value::Object(m)
}

fn put_body(key: &[u8], value: &[u8], lease: Option<LeaseId>) -> Value {
    let mut m = Map::new();
    m.insert("key".into(), B64.encode(key).into());
    m.insert("value".into(), B64.encode(value).into());
    if let Some(l) = lease {
        m.insert("lease".into(), l.to_string().into());
    }
    Value::Object(m)
}

fn compare_json(c: &Compare) -> Value {
    let result = match c.op {
        CompareOp::Equal => "EQUAL",
        CompareOp::NotEqual => "NOT_EQUAL",
        CompareOp::Greater => "GREATER",
        CompareOp::Less => "LESS",
    };
    let mut m = Map::new();
    m.insert("key".into(), B64.encode(&c.key).into());
    m.insert("result".into(), result.into());
    let (target, field, value): (&str, &str, Value) = match &c.target {
        Target::CreateRevision(r) => ("CREATE", "create_revision", r.to_string().into()),
        Target::ModRevision(r) => ("MOD", "mod_revision", r.to_string().into()),
        Target::Version(r) => ("VERSION", "version", r.to_string().into()),
        Target::Value(v) => ("VALUE", "value", B64.encode(v).into()),
    };
    m.insert("target".into(), target.into());
    m.insert(field.into(), value);
    Value::Object(m)
}

fn op_json(op: &Op) -> Value {
    match op {
        Op::Range { key, prefix } => json!({ "request_range": range_body(key, *prefix) }),
        Op::Put { key, value, lease } => json!({ "request_put": put_body(key, value, *lease) }),
        Op::Delete { key, prefix } => json!({ "request_delete_range": range_body(key, *prefix) }),
    }
}

fn op_result(r: &Value) -> Result<OpResult, EtcdError> {
    if let Some(range) = r.get("response_range") {
        return Ok(OpResult::Range(kvs(range)?));
    }
    if let Some(put) = r.get("response_put") {
        return Ok(OpResult::Put {
            revision: put.get("header").map_or(Ok(0), |h| int(h, "revision"))?,
        });
    }
    if let Some(del) = r.get("response_delete_range") {
        return Ok(OpResult::Delete {
            deleted: int(del, "deleted")?,
        });
    }
    Err(bad("an unknown transaction response"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/a/"), b"/a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn hostile_json_is_an_error() {
        let r = |body: &[u8]| http::Response {
            status: 200,
            body: body.to_vec(),
        };
        assert!(decode(r(b"not json")).is_err());
        assert!(decode(r(b"[1,2]")).is_err());
        let v = decode(r(br#"{"header":{"revision":"x"},"kvs":[{"key":"!!"}]}"#)).expect("an object");
        assert!(header_revision(&v).is_err());
        assert!(kvs(&v).is_err());
        let v = decode(r(br#"{"kvs":{"a":1},"deleted":true}"#)).expect("an object");
        assert!(kvs(&v).is_err());
        assert!(int(&v, "deleted").is_err());
        assert!(header_revision(&v).is_err());
        let e = decode(http::Response {
            status: 400,
            body: br#"{"error":"bad","code":3,"message":"etcdserver: bad"}"#.to_vec(),
        })
        .expect_err("a status error");
        assert!(
            matches!(
                e,
                EtcdError::Status {
                    status: 400,
                    code: 3,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn urls() {
        assert_eq!(Etcd::new("http://127.0.0.1:2379").expect("ok").endpoints().len(), 1);
        assert_eq!(
            Etcd::new("127.0.0.1:1, http://127.0.0.1:2/")
                .expect("ok")
                .endpoints()
                .len(),
            2
        );
        for bad in [
            "",
            "https://127.0.0.1:2379",
            "http://127.0.0.1:2379/v3",
            "http://nohost",
        ] {
            assert!(Etcd::new(bad).is_err(), "{bad}");
        }
    }
}
