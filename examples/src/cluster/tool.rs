//! `ringkv-cluster`: create a cluster's slot map, add a shard, move slots,
//! show the map. The map lives in etcd (`--etcd`, changed by a
//! compare-and-swap on its revision) or in a file (`--map`) that every node
//! reads; after a change the tool sends `CLUSTER RELOAD` to every node in it.
//!
//! Moving slots that hold keys is a migration without stopping writes
//! (`move-slots`): the target shard's primary imports a filtered snapshot
//! of the slots from the source's primary and then follows its log,
//! filtered to them (`CLUSTER IMPORT`); once it is caught up, the source
//! hands the slots over (`CLUSTER HANDOVER`: writes to them wait a moment,
//! the target applies the last of the log, the map changes by a
//! compare-and-swap, the source answers MOVED from then on). Slots nobody
//! owns are simply assigned.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use super::map::{NodeAddr, ShardMap, SlotMap, SlotRange};
use super::migrate::{range_text, SlotSet};
use super::source::{lock_map_file, read_map_file, write_map_file, EtcdSource, ETCD_MAP_KEY};
use crate::resp::{BlockingClient, Frame};

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
    /// Move slots `START-END` (or one slot) to shard `--to`, with their
    /// keys, while writes go on.
    MoveSlots {
        /// `START-END` or `SLOT`.
        #[arg(long)]
        slots: String,
        /// The shard that gets them.
        #[arg(long)]
        to: String,
        /// How long writes to the slots may wait at the hand-over for the
        /// target to apply the last of the log (ms, at most 30000).
        #[arg(long, default_value_t = 2000)]
        handover_timeout_ms: u64,
        /// Hand-overs tried before giving up (each one that times out
        /// changes nothing).
        #[arg(long, default_value_t = 3)]
        attempts: u32,
        /// Longest wait for the target to copy the slots and catch up (s).
        #[arg(long, default_value_t = 600)]
        catch_up_timeout_s: u64,
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
            Store::File(path) => {
                let map = read_map_file(path).map_err(|e| e.to_string())?;
                let epoch = i64::try_from(map.epoch).unwrap_or(i64::MAX);
                Ok((map, Some(epoch)))
            }
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
            Store::File(path) => {
                // A compare-and-swap on the epoch, under the map's lock file.
                let _lock = lock_map_file(path).map_err(|e| e.to_string())?;
                if let Some(epoch) = revision {
                    let now = read_map_file(path).map_err(|e| e.to_string())?.epoch;
                    if i64::try_from(now).unwrap_or(i64::MAX) != epoch {
                        return Err("the slot map file changed meanwhile: nothing written, run again".into());
                    }
                }
                write_map_file(path, map).map_err(|e| e.to_string())
            }
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
        Cmd::MoveSlots {
            slots,
            to,
            handover_timeout_ms,
            attempts,
            catch_up_timeout_s,
        } => {
            let (map, rev) = store.load()?;
            let range = parse_range(&slots)?;
            if map.shard(&to).is_none() {
                return Err(format!("no shard {to:?} in the slot map"));
            }
            // Slots nobody owns are assigned; owned ones move with their
            // keys, one migration per current owner.
            let mut by_owner: Vec<(String, Vec<u16>)> = Vec::new();
            let mut unowned = Vec::new();
            for slot in range[0]..=range[1] {
                match map.owner_of(slot) {
                    None => unowned.push(slot),
                    Some(o) if o.name == to => {}
                    Some(o) => match by_owner.iter_mut().find(|(n, _)| *n == o.name) {
                        Some((_, v)) => v.push(slot),
                        None => by_owner.push((o.name.clone(), vec![slot])),
                    },
                }
            }
            let mut text = String::new();
            if !unowned.is_empty() {
                let mut assigned = map.clone();
                for r in contiguous(&unowned) {
                    assigned = assigned.with_slots_assigned(r, &to).map_err(|e| e.to_string())?;
                }
                store.save(&assigned, rev)?;
                text.push_str(&format!("assigned {} unowned slots to {to}\n", unowned.len()));
            }
            let moves = Moves {
                store: &store,
                handover_timeout: Duration::from_millis(handover_timeout_ms),
                attempts: attempts.max(1),
                catch_up_timeout: Duration::from_secs(catch_up_timeout_s),
            };
            for (from, slots) in by_owner {
                let set = SlotSet::from_ranges(&contiguous(&slots)).map_err(|e| e.to_string())?;
                text.push_str(&moves.migrate(&from, &to, &set)?);
                text.push('\n');
            }
            let (map, _) = store.load()?;
            let missed = reload_all(&map);
            text.push_str(&show(&map));
            for m in missed {
                text.push_str(&format!("not reloaded (it polls the map): {m}\n"));
            }
            Ok(text)
        }
        Cmd::Show => Ok(show(&store.load()?.0)),
    }
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

/// One command to one node over RESP2 (bounded by timeouts): an error
/// reply is an `Err`.
fn command(node: &NodeAddr, args: &[&str]) -> Result<Frame, String> {
    call(&node.endpoint(), args, Duration::from_secs(10))
}

fn call(endpoint: &str, args: &[&str], timeout: Duration) -> Result<Frame, String> {
    let mut c = BlockingClient::connect(endpoint, timeout).map_err(|e| e.to_string())?;
    match c.call(args).map_err(|e| e.to_string())? {
        Frame::Error(e) => Err(format!("{endpoint}: {e}")),
        f => Ok(f),
    }
}

/// Sorted slots as contiguous ranges.
fn contiguous(slots: &[u16]) -> Vec<SlotRange> {
    let mut out: Vec<SlotRange> = Vec::new();
    for &s in slots {
        match out.last_mut() {
            Some(last) if last[1] + 1 == s => last[1] = s,
            _ => out.push([s, s]),
        }
    }
    out
}

/// One `move-slots` run's migrations.
struct Moves<'a> {
    store: &'a Store,
    handover_timeout: Duration,
    attempts: u32,
    catch_up_timeout: Duration,
}

/// A stream is caught up when the target is this close to the source's
/// position (bytes of the source's log).
const CAUGHT_UP_BYTES: u64 = 1 << 20;

impl Moves<'_> {
    /// The RESP endpoint of `shard`'s primary: its leader in etcd when
    /// there is one (after a failover), else the map's.
    fn primary(&self, shard: &str) -> Result<String, String> {
        let (map, _) = self.store.load()?;
        let named = map
            .shard(shard)
            .ok_or_else(|| format!("no shard {shard:?} in the slot map"))?
            .primary
            .endpoint();
        if let Store::Etcd(source) = self.store {
            if let Ok(Some(l)) = crate::coord::leader(source.etcd(), shard) {
                return Ok(l.record.resp);
            }
        }
        Ok(named)
    }

    /// Moves `slots` from shard `from` to `to` with their keys: import,
    /// catch up, hand over (tried `attempts` times). The report's text.
    fn migrate(&self, from: &str, to: &str, slots: &SlotSet) -> Result<String, String> {
        let (source, target) = (self.primary(from)?, self.primary(to)?);
        let ranges: Vec<String> = slots.ranges().into_iter().map(range_text).collect();
        let started = Instant::now();
        let mut import = vec!["CLUSTER", "IMPORT", from];
        import.extend(ranges.iter().map(String::as_str));
        call(&target, &import, Duration::from_secs(10))?;
        let result = self.hand_over(&source, &target, &ranges, slots, started);
        if result.is_err() {
            // Nothing moved: the source keeps the slots.
            let _ = call(&target, &["CLUSTER", "IMPORT", "CANCEL"], Duration::from_secs(10));
        }
        result
    }

    fn hand_over(
        &self,
        source: &str,
        target: &str,
        ranges: &[String],
        slots: &SlotSet,
        started: Instant,
    ) -> Result<String, String> {
        let deadline = started + self.catch_up_timeout;
        let mut tries = 0;
        loop {
            let status = import_status(target)?;
            let field = |k: &str| status.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            match field("state").as_deref() {
                Some("failed") | Some("cancelled") => {
                    return Err(format!(
                        "the import on {target} stopped: {}",
                        field("error").unwrap_or_default()
                    ))
                }
                Some("committed") => {
                    return Ok(format!("moved {slots} (the hand-over was already done)"));
                }
                Some("streaming") => {
                    let applied: u64 = field("applied").and_then(|v| v.parse().ok()).unwrap_or(0);
                    let head = source_position(source, slots)?.unwrap_or(applied);
                    if head.saturating_sub(applied) <= CAUGHT_UP_BYTES {
                        let copied = started.elapsed();
                        let timeout = self.handover_timeout.as_millis().to_string();
                        let mut cmd = vec!["CLUSTER", "HANDOVER"];
                        cmd.extend(ranges.iter().map(String::as_str));
                        cmd.extend(["TIMEOUT", &timeout]);
                        let wait = self.handover_timeout + Duration::from_secs(15);
                        match call(source, &cmd, wait) {
                            Ok(Frame::Bulk(done)) => {
                                return Ok(format!(
                                    "{} (copied and caught up in {} ms, {} snapshot items, {} log mutations)",
                                    String::from_utf8_lossy(&done),
                                    copied.as_millis(),
                                    field("snapshot-items").unwrap_or_default(),
                                    field("mutations").unwrap_or_default()
                                ))
                            }
                            Ok(other) => return Err(format!("{source}: HANDOVER answered {other:?}")),
                            Err(e) if e.contains("TRYAGAIN") && tries + 1 < self.attempts => {
                                tries += 1;
                                eprintln!("hand-over attempt {tries} timed out ({e}); trying again");
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the import of {slots} did not catch up within {} s",
                    self.catch_up_timeout.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `CLUSTER IMPORT STATUS` on `target` as (field, value) pairs.
fn import_status(target: &str) -> Result<Vec<(String, String)>, String> {
    match call(target, &["CLUSTER", "IMPORT", "STATUS"], Duration::from_secs(10))? {
        Frame::Array(items) => Ok(pairs(&items)),
        Frame::Null => Err(format!("{target}: no import is running")),
        other => Err(format!("{target}: CLUSTER IMPORT STATUS answered {other:?}")),
    }
}

fn pairs(items: &[Frame]) -> Vec<(String, String)> {
    items
        .chunks(2)
        .filter_map(|kv| match kv {
            [k, v] => Some((
                String::from_utf8_lossy(k.as_bytes()?).into_owned(),
                String::from_utf8_lossy(v.as_bytes()?).into_owned(),
            )),
            _ => None,
        })
        .collect()
}

/// How far the source's stream of `slots` has reached in its log.
fn source_position(source: &str, slots: &SlotSet) -> Result<Option<u64>, String> {
    let Frame::Array(sessions) = call(source, &["CLUSTER", "MIGRATE-STATUS"], Duration::from_secs(10))? else {
        return Ok(None);
    };
    let want = slots.to_string();
    for s in sessions {
        let Frame::Array(items) = s else { continue };
        let fields = pairs(&items);
        let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        if get("slots").as_deref() == Some(want.as_str()) {
            return Ok(get("queued-to").and_then(|v| v.parse().ok()));
        }
    }
    Ok(None)
}
