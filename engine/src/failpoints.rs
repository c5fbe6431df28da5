//! Failpoints: the named places where tests inject I/O errors (the `fail`
//! crate, as raft-engine does), behind the `failpoints` feature. Without
//! the feature `fail_point!` expands to nothing and the `fail` crate is
//! not even a dependency. `engine/tests/failpoints.rs` configures each of
//! them and checks what the engine does (`cargo test -p ringkv --features
//! failpoints --test failpoints`).
//!
//! Every point returns the error the real failure would, through the same
//! path: an action `return` injects EIO, `return(ENOSPC)` (or `EDQUOT`,
//! `EROFS`, `EOPNOTSUPP`, `EIO`) that errno, as an [`std::io::Error`] the
//! caller wraps as it wraps the real one.
//!
//! | name | where | the real failure | outcome |
//! |---|---|---|---|
//! | `ring::create` | `log/file.rs` `create_allocated`: creating the ring file | `open(O_CREAT\|O_EXCL)` fails | `LogError::Io` "creating …/ring.log"; nothing is left behind |
//! | `ring::fallocate` | `log/file.rs` `fallocate`: allocating a new ring file's blocks, or the blocks an existing one lacks | ENOSPC (EOPNOTSUPP: the filesystem has none, zeros are written instead) | `LogError::Io` "… no space left on the device"; a new file is removed, an existing one kept |
//! | `ring::msync_data` | `log/memory.rs` `flush_data`: msync of ring data (group commit, everysec, `Engine::sync`, a full sync's wipe, the wipe of a cut tail on open) | msync fails (EIO) | `LogError::Io` "msync of the ring"; a failed sync poisons the log (`LogError::Poisoned` for every later write) |
//! | `ring::msync_header` | `log/memory.rs` `flush_header`: msync of the header page | msync fails | as `ring::msync_data` in a sync; elsewhere (creating a ring, trimming it after a save, a history switch) the call fails and the log stays usable |
//! | `ring::header_write` | `log/ring.rs` `write_header`, before the header changes | (a header write is a copy into the mapping; this stands for any failure to produce the header) | `LogError::Io` "writing the ring header"; the header is unchanged |
//! | `snapshot::write` | `services/snapshot.rs` `SnapshotFile::write`: every write into `snapshot.tmp` | ENOSPC, EIO | `SnapshotError::Io`; the temporary file is removed, the previous snapshot stays |
//! | `snapshot::fsync` | `services/snapshot.rs` `save`: fsync of `snapshot.tmp` | EIO | as `snapshot::write` |
//! | `snapshot::rename` | `services/snapshot.rs` `save`: the rename to `snapshot-<offset>.rkvs` | EIO, ENOSPC | as `snapshot::write` |
//! | `snapshot::dir_fsync` | `services/snapshot.rs` `save`: fsync of the data directory after the rename | EIO | `SnapshotError::Io`; the new snapshot file stays (it is whole and fsynced), nothing older is removed, the ring is not trimmed |
//! | `replica::append` | `log/ring.rs` `append_stream`: copying a primary's records into a follower's ring | (a copy into the mapping; stands for any failure there) | `LogError::Io`; nothing is published and the follower's ring is poisoned |
//!
//! Failpoints are global to the process: their tests run one at a time
//! inside a `fail::FailScenario`.

/// `fail_point!(name, |arg| expr)`: with the `failpoints` feature, the
/// `fail` crate's macro (when the point is configured to return, the
/// enclosing function returns `expr`); without it, nothing.
macro_rules! fail_point {
    ($name:literal, $e:expr) => {
        #[cfg(feature = "failpoints")]
        fail::fail_point!($name, $e);
    };
}

/// The I/O error a failpoint's `return(ERRNO)` action injects (EIO for a
/// bare `return` or an errno this does not know).
#[cfg(feature = "failpoints")]
pub(crate) fn injected(arg: Option<String>) -> std::io::Error {
    use rustix::io::Errno;
    let errno = match arg.as_deref().map(str::trim) {
        Some("ENOSPC") => Errno::NOSPC,
        Some("EDQUOT") => Errno::DQUOT,
        Some("EROFS") => Errno::ROFS,
        Some("EOPNOTSUPP") => Errno::OPNOTSUPP,
        _ => Errno::IO,
    };
    std::io::Error::from(errno)
}
