//! `ringkv-cluster`: create a cluster's slot map, add a shard, move slots,
//! show the map. The map lives in etcd (`--etcd`, changed by a
//! compare-and-swap on its revision) or in a file (`--map`) that every node
//! reads; after a change the tool sends `CLUSTER RELOAD` to every node in it.
//!
//! Moving slots moves only the assignment: a slot that still holds keys on
//! its current owner is refused (moving the keys themselves, by a filtered
//! snapshot and the filtered log, is not built yet).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use super::map::{NodeAddr, ShardMap, SlotMap, SlotRange};
use super::source::{read_map_file, EtcdSource, ETCD_MAP_KEY};
use crate::resp::Frame;

/// The command line.
#[derive(Debug, Parser)]
#[command(version, about = "ringkv-cluster: the slot map of a ringkv cluster")]
pub struct Args {
    /// The slot map file the nodes read (TOML, or JSON if `.json`).
    #[arg(long, conflicts_with = "etcd", required_unless_present = "etcd")]
    pub map: Option<PathBuf>,
    /// etcd holding the slot map (`http://host:port`), as the nodes'
    /// `--cluster-etcd`.
    #[arg(long)]
    pub etcd: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Write a new map: one shard per primary (`ID@HOST:PORT`), slots split evenly.
    Create {
        /// The primaries, `ID@HOST:PORT`.
        #[arg(long = "primary", required = true)]
        primaries: Vec<String>,
        /// A replica of a shard, `SHARD=ID@HOST:PORT` (shards are named
        /// `shard-0`, `shard-1`, ... in the order of `--primary`).
        #[arg(long = "replica")]
        replicas: Vec<String>,
        /// Replace an existing map file.
        #[arg(long)]
        force: bool,
    },
    /// Add a shard that owns no slots yet.
    AddShard {
        /// Its name.
        #[arg(long)]
        name: String,
        /// Its primary, `ID@HOST:PORT`.
        #[arg(long)]
        primary: String,
        /// Its replicas, `ID@HOST:PORT`.
        #[arg(long = "replica")]
        replicas: Vec<String>,
    },
    /// Assign slots `START-END` (or one slot) to shard `--to`; refused
    /// while the current owner holds keys in them.
    MoveSlots {
        /// `START-END` or `SLOT`.
        #[arg(long)]
        slots: String,
        /// The shard that gets them.
        #[arg(long)]
        to: String,
    },
    /// Print the map.
    Show,
}

/// Where the map is kept.
enum Store {
    File(PathBuf),
    Etcd(EtcdSource),
}

impl Store {
    /// The map and, in etcd, the revision a change must start from.
    fn load(&self) -> Result<(SlotMap, Option<i64>), String> {
        match self {
            Store::File(path) => Ok((read_map_file(path).map_err(|e| e.to_string())?, None)),
            Store::Etcd(etcd) => match etcd.load_versioned().map_err(|e| e.to_string())? {
                Some((map, rev)) => Ok((map, Some(rev))),
                None => Err(format!("no slot map in etcd at {ETCD_MAP_KEY} (use create)")),
            },
        }
    }

    fn exists(&self) -> Result<Option<i64>, String> {
        match self {
            Store::File(path) => Ok(path.exists().then_some(0)),
            Store::Etcd(etcd) => Ok(etcd.load_versioned().map_err(|e| e.to_string())?.map(|(_, rev)| rev)),
        }
    }

    /// Writes `map` over the one loaded at `revision`.
    fn save(&self, map: &SlotMap, revision: Option<i64>) -> Result<(), String> {
        match self {
            Store::File(path) => write(path, map),
            Store::Etcd(etcd) => match etcd.store(map, revision).map_err(|e| e.to_string())? {
                true => Ok(()),
                false => Err("the slot map in etcd changed meanwhile: nothing written, run again".into()),
            },
        }
    }
}

/// Runs the tool; the text to print, or why it failed.
pub fn run(args: Args) -> Result<String, String> {
    let store = match (&args.map, &args.etcd) {
        (_, Some(urls)) => Store::Etcd(EtcdSource::new(urls).map_err(|e| e.to_string())?),
        (Some(path), None) => Store::File(path.clone()),
        (None, None) => return Err("--map FILE or --etcd URL".into()),
    };
    match args.command {
        Cmd::Create {
            primaries,
            replicas,
            force,
        } => {
            let existing = store.exists()?;
            if existing.is_some() && !force {
                return Err("a slot map exists (use --force to replace it)".into());
            }
            let nodes = primaries.iter().map(|p| parse_node(p)).collect::<Result<Vec<_>, _>>()?;
            let mut map = SlotMap::even(nodes).map_err(|e| e.to_string())?;
            for r in &replicas {
                let (shard, node) = r
                    .split_once('=')
                    .ok_or_else(|| format!("{r:?} is not SHARD=ID@HOST:PORT"))?;
                let node = parse_node(node)?;
                let s = map
                    .shards
                    .iter_mut()
                    .find(|s| s.name == shard)
                    .ok_or_else(|| format!("no shard {shard:?} (shards are shard-0, shard-1, ...)"))?;
                s.replicas.push(node);
            }
            map.validate().map_err(|e| e.to_string())?;
            store.save(&map, existing.filter(|_| matches!(store, Store::Etcd(_))))?;
            Ok(show(&map))
        }
        Cmd::AddShard {
            name,
            primary,
            replicas,
        } => {
            let (map, rev) = store.load()?;
            let shard = ShardMap {
                name,
                slots: Vec::new(),
                primary: parse_node(&primary)?,
                replicas: replicas.iter().map(|r| parse_node(r)).collect::<Result<_, _>>()?,
            };
            let map = map.with_shard(shard).map_err(|e| e.to_string())?;
            store.save(&map, rev)?;
            // The new shard's nodes may not run yet: they read the map when
            // they start. Nodes not reached are named, not fatal.
            let missed = reload_all(&map);
            let mut text = show(&map);
            for m in missed {
                text.push_str(&format!("not reloaded: {m}\n"));
            }
            Ok(text)
        }
        Cmd::MoveSlots { slots, to } => {
            let (map, rev) = store.load()?;
            let range = parse_range(&slots)?;
            for slot in range[0]..=range[1] {
                let Some(owner) = map.owner_of(slot) else { continue };
                if owner.name == to {
                    continue;
                }
                let keys = match command(&owner.primary, &["CLUSTER", "COUNTKEYSINSLOT", &slot.to_string()])? {
                    Frame::Int(n) => n,
                    other => return Err(format!("{}: unexpected reply {other:?}", owner.primary.endpoint())),
                };
                if keys > 0 {
                    return Err(format!(
                        "slot {slot} holds {keys} keys on {}: moving keys is not supported yet, only empty slots",
                        owner.name
                    ));
                }
            }
            let map = map.with_slots_assigned(range, &to).map_err(|e| e.to_string())?;
            store.save(&map, rev)?;
            let missed = reload_all(&map);
            if !missed.is_empty() {
                return Err(format!(
                    "the map is written, but these nodes did not reload it: {}",
                    missed.join("; ")
                ));
            }
            Ok(show(&map))
        }
        Cmd::Show => Ok(show(&store.load()?.0)),
    }
}

/// Writes the map in the file's format, through a temporary file and a
/// rename, so a node never reads half a map.
fn write(path: &std::path::Path, map: &SlotMap) -> Result<(), String> {
    let text = if path.extension().is_some_and(|e| e == "json") {
        serde_json::to_string_pretty(map).map_err(|e| e.to_string())?
    } else {
        toml::to_string(map).map_err(|e| e.to_string())?
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Tells every node to read the map again; returns the failures.
fn reload_all(map: &SlotMap) -> Vec<String> {
    let mut missed = Vec::new();
    for node in map
        .shards
        .iter()
        .flat_map(|s| std::iter::once(&s.primary).chain(&s.replicas))
    {
        match command(node, &["CLUSTER", "RELOAD"]) {
            Ok(Frame::Simple(_)) => {}
            Ok(other) => missed.push(format!("{}: CLUSTER RELOAD answered {other:?}", node.endpoint())),
            Err(e) => missed.push(e),
        }
    }
    missed
}

/// `ID@HOST:PORT`.
fn parse_node(s: &str) -> Result<NodeAddr, String> {
    let bad = || format!("{s:?} is not ID@HOST:PORT");
    let (id, addr) = s.split_once('@').ok_or_else(bad)?;
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse().map_err(|_| bad())?;
    if id.is_empty() || host.is_empty() || id.contains(' ') {
        return Err(bad());
    }
    Ok(NodeAddr {
        id: id.into(),
        host: host.into(),
        port,
    })
}

/// `START-END` or `SLOT`.
fn parse_range(s: &str) -> Result<SlotRange, String> {
    let bad = || format!("{s:?} is not START-END or SLOT");
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    Ok([a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?])
}

/// The map as a table.
pub fn show(map: &SlotMap) -> String {
    let mut out = format!(
        "epoch {}, {} of 16384 slots assigned\n",
        map.epoch,
        map.assigned_slots()
    );
    for s in &map.shards {
        let ranges: Vec<String> = s.slots.iter().map(|[a, b]| format!("{a}-{b}")).collect();
        out.push_str(&format!(
            "{}: slots {} primary {} {}",
            s.name,
            if ranges.is_empty() {
                "-".to_string()
            } else {
                ranges.join(",")
            },
            s.primary.id,
            s.primary.endpoint()
        ));
        for r in &s.replicas {
            out.push_str(&format!(" replica {} {}", r.id, r.endpoint()));
        }
        out.push('\n');
    }
    for m in &map.migrations {
        out.push_str(&format!(
            "migrating {}-{} from {} to {}\n",
            m.slots[0], m.slots[1], m.from, m.to
        ));
    }
    out
}

/// One command to one node over RESP2 (bounded by timeouts).
fn command(node: &NodeAddr, args: &[&str]) -> Result<Frame, String> {
    let fail = |e: std::io::Error| format!("{}: {e}", node.endpoint());
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&node.endpoint())
        .map_err(fail)?
        .next()
        .ok_or_else(|| format!("{}: no address", node.endpoint()))?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(fail)?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).map_err(fail)?;
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    stream.write_all(req.as_bytes()).map_err(fail)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((frame, _)) = Frame::parse(&buf).map_err(|e| format!("{}: {e}", node.endpoint()))? {
            return match frame {
                Frame::Error(e) => Err(format!("{}: {e}", node.endpoint())),
                f => Ok(f),
            };
        }
        let n = stream.read(&mut chunk).map_err(fail)?;
        if n == 0 {
            return Err(format!("{}: connection closed", node.endpoint()));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
