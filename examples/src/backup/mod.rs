//! Continuous backup and point-in-time restore (`ringkv-backup`,
//! `ringkv-restore`).
//!
//! A backup follows a primary as an *observer* follower (never counted by
//! WAIT or the write gate, never promoted), keeps in a backup directory
//! chains of snapshots and sealed, checksummed segments of the log with
//! time marks, and can rebuild a data directory as of any offset or moment
//! it holds. One concept per file:
//!
//! | file | owns |
//! |---|---|
//! | `layout.rs` | the directory layout and file names, durable publish (fsync, rename, directory fsync) |
//! | `segment.rs` | the segment format: writing, sealing, reading with every byte checked |
//! | `catalog.rs` | what a directory holds, the restorable ranges, resolving a point to a plan |
//! | `writer.rs` | tailing the backup follower's ring into segments, snapshots, chains |
//! | `retention.rs` | what is kept, by age and by size |
//! | `restore.rs` | building a data directory at a point |
//! | `service.rs` | the running backup: follower plus writer thread |
//! | `target.rs` | `--at`: offsets, moments, time formats |
//! | `cli.rs` | the two command lines |
//! | `error.rs` | [`BackupError`] |

pub mod catalog;
pub mod cli;
mod error;
pub mod layout;
pub mod restore;
pub mod retention;
pub mod segment;
pub mod service;
pub mod target;
pub mod writer;

pub use catalog::Catalog;
pub use error::BackupError;
pub use restore::{restore, RestoreOptions, Restored};
pub use retention::RetentionConfig;
pub use service::{Backup, BackupOptions};
pub use target::Target;
pub use writer::{BackupWriter, WriterConfig, WriterStats};
