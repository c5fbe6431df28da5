//! Where a node gets the slot map: a [`SlotMapSource`]. Today the map comes
//! from the node's config (inline, or a TOML/JSON file that the
//! `ringkv-cluster` tool writes); the etcd-backed source plugs in behind the
//! same trait, so nothing above it knows where the map lives.

use std::path::{Path, PathBuf};

use super::map::{MapError, SlotMap};

/// A place that holds the current slot map.
pub trait SlotMapSource: Send + Sync + std::fmt::Debug {
    /// The current map, validated.
    fn load(&self) -> Result<SlotMap, MapError>;
}

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
