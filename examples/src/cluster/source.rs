//! Where a node gets the slot map: a [`SlotMapSource`] — etcd
//! ([`EtcdSource`], the cluster's coordinator), a TOML/JSON file
//! ([`FileSource`]), or the node's config ([`StaticSource`]). The
//! `ringkv-cluster` tool writes the first two; nothing above the trait knows
//! where the map lives.

use std::path::{Path, PathBuf};

use super::map::{MapError, SlotMap};
use crate::coord::{Compare, Etcd, Op};

/// A place that holds the current slot map.
pub trait SlotMapSource: Send + Sync + std::fmt::Debug {
    /// The current map, validated.
    fn load(&self) -> Result<SlotMap, MapError>;

    /// Replaces the current map by `change(current)` as one
    /// compare-and-swap (in etcd; a file is rewritten through a rename),
    /// trying again a few times if someone else changed it in between;
    /// returns the map written. A source that cannot be written (a map in
    /// the node's config) says so.
    fn replace(&self, change: &mut dyn FnMut(&SlotMap) -> Result<SlotMap, MapError>) -> Result<SlotMap, MapError> {
        let _ = change;
        Err(MapError::Unavailable(
            "this node's slot map is fixed in its config: slots can move only with the map in etcd or a file".into(),
        ))
    }
}

/// How many times [`SlotMapSource::replace`] tries again after losing a
/// compare-and-swap to another change.
const REPLACE_ATTEMPTS: usize = 5;

/// A fixed map (from the server's config file).
#[derive(Debug, Clone)]
pub struct StaticSource(pub SlotMap);

impl SlotMapSource for StaticSource {
    fn load(&self) -> Result<SlotMap, MapError> {
        self.0.validate()?;
        Ok(self.0.clone())
    }
}

/// A map file, read again on every load (CLUSTER commands that reload, or
/// a tool that rewrote it): `.json` is JSON, anything else TOML.
#[derive(Debug, Clone)]
pub struct FileSource(pub PathBuf);

impl SlotMapSource for FileSource {
    fn load(&self) -> Result<SlotMap, MapError> {
        read_map_file(&self.0)
    }

    fn replace(&self, change: &mut dyn FnMut(&SlotMap) -> Result<SlotMap, MapError>) -> Result<SlotMap, MapError> {
        // Read, change and write under the map's lock file: two changes
        // (two hand-overs, a hand-over and the tool) never lose one.
        let _lock = lock_map_file(&self.0)?;
        let map = change(&read_map_file(&self.0)?)?;
        write_map_file(&self.0, &map)?;
        Ok(map)
    }
}

/// How long [`lock_map_file`] waits for another change to end.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Takes the exclusive lock of a map file's lock file (`<map>.lock`,
/// created if missing; waiting at most 5 s for another holder), held until
/// the returned file is dropped: the
/// compare-and-swap of a map kept in a file (every node and the tool on
/// one host, or a file system with working `flock`).
pub fn lock_map_file(path: &Path) -> Result<std::fs::File, MapError> {
    let lock_path = path.with_extension("lock");
    let failed = |e: std::io::Error| MapError::Unavailable(format!("{}: {e}", lock_path.display()));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(failed)?;
    // Bounded: a hand-over holds writes fenced while it waits for this.
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(MapError::Unavailable(format!(
                    "{}: held by another change for {} s",
                    lock_path.display(),
                    LOCK_WAIT.as_secs()
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(failed(e)),
        }
    }
}

/// Writes a slot map file in its format (`.json`: JSON, else TOML)
/// through a temporary file and a rename, so a node never reads half a map.
pub fn write_map_file(path: &Path, map: &SlotMap) -> Result<(), MapError> {
    map.validate()?;
    let text = if path.extension().is_some_and(|e| e == "json") {
        serde_json::to_string_pretty(map).map_err(|e| MapError::Parse(e.to_string()))?
    } else {
        toml::to_string(map).map_err(|e| MapError::Parse(e.to_string()))?
    };
    let tmp = path.with_extension("tmp");
    let failed = |p: &Path, e: std::io::Error| MapError::Unavailable(format!("{}: {e}", p.display()));
    std::fs::write(&tmp, text).map_err(|e| failed(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| failed(path, e))
}

/// Reads and validates a slot map file (`.json`: JSON, else TOML).
pub fn read_map_file(path: &Path) -> Result<SlotMap, MapError> {
    let text = std::fs::read(path).map_err(|e| MapError::Parse(format!("{}: {e}", path.display())))?;
    if path.extension().is_some_and(|e| e == "json") {
        SlotMap::from_json(&text)
    } else {
        SlotMap::from_toml(&String::from_utf8_lossy(&text))
    }
}

/// The key under which a cluster's slot map lives in etcd (JSON).
pub const ETCD_MAP_KEY: &str = "/ringkv/cluster/slotmap";

/// The slot map in etcd, at [`ETCD_MAP_KEY`] as JSON, read on every load;
/// [`EtcdSource::store`] replaces it by a compare-and-swap on the key's
/// revision, so two tools never overwrite each other's change.
#[derive(Debug, Clone)]
pub struct EtcdSource {
    etcd: Etcd,
}

impl EtcdSource {
    /// A source over etcd at `urls` (comma-separated `http://host:port`).
    pub fn new(urls: &str) -> Result<EtcdSource, MapError> {
        let etcd = Etcd::new(urls).map_err(|e| MapError::Unavailable(e.to_string()))?;
        Ok(EtcdSource { etcd })
    }

    /// The etcd client (the tool also reads shards' leaders through it).
    pub fn etcd(&self) -> &Etcd {
        &self.etcd
    }

    /// The map and the revision of its last change (`None`: no map yet).
    pub fn load_versioned(&self) -> Result<Option<(SlotMap, i64)>, MapError> {
        let kv = self
            .etcd
            .get(ETCD_MAP_KEY.as_bytes())
            .map_err(|e| MapError::Unavailable(e.to_string()))?;
        kv.map(|kv| Ok((SlotMap::from_json(&kv.value)?, kv.mod_revision)))
            .transpose()
    }

    /// Writes `map` if the stored one is still at `revision` (`None`: if
    /// there is none). False when someone changed it in between.
    pub fn store(&self, map: &SlotMap, revision: Option<i64>) -> Result<bool, MapError> {
        map.validate()?;
        let key = ETCD_MAP_KEY.as_bytes();
        let json = serde_json::to_vec(map).map_err(|e| MapError::Parse(e.to_string()))?;
        let compare = match revision {
            Some(rev) => Compare::mod_revision(key, rev),
            None => Compare::create_revision(key, 0),
        };
        let r = self
            .etcd
            .txn(&[compare], &[Op::put(key, &json, None)], &[])
            .map_err(|e| MapError::Unavailable(e.to_string()))?;
        Ok(r.succeeded)
    }
}

impl SlotMapSource for EtcdSource {
    fn load(&self) -> Result<SlotMap, MapError> {
        match self.load_versioned()? {
            Some((map, _)) => Ok(map),
            None => Err(MapError::Unavailable(format!("no slot map at {ETCD_MAP_KEY} in etcd"))),
        }
    }

    fn replace(&self, change: &mut dyn FnMut(&SlotMap) -> Result<SlotMap, MapError>) -> Result<SlotMap, MapError> {
        for _ in 0..REPLACE_ATTEMPTS {
            let Some((current, revision)) = self.load_versioned()? else {
                return Err(MapError::Unavailable(format!("no slot map at {ETCD_MAP_KEY} in etcd")));
            };
            let map = change(&current)?;
            if self.store(&map, Some(revision))? {
                return Ok(map);
            }
        }
        Err(MapError::Unavailable(format!(
            "the slot map in etcd kept changing: {REPLACE_ATTEMPTS} compare-and-swaps lost"
        )))
    }
}
