//! The ring file on disk: creating it with all of its blocks allocated,
//! and syncing the directory that holds it.
//!
//! The ring is written through a shared mapping. In a sparse file (what
//! `set_len` makes) the filesystem allocates a block when a write first
//! faults on its page, and a full filesystem answers that fault with
//! SIGBUS, which kills the process. So a new ring file gets every block
//! before it is mapped: `fallocate` (through `rustix`, without `unsafe`),
//! or, where the filesystem has no `fallocate`, written zeros. No room is a
//! [`LogError::Io`] that names the file and says "no space", and the
//! half-made file is removed. Opening an existing file allocates what it
//! lacks the same way (a copy may have made it sparse) but never writes
//! zeros over it.
//!
//! On copy-on-write filesystems (btrfs, ZFS) a rewrite needs fresh blocks
//! even where the file is allocated, so this cannot rule SIGBUS out there.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use rustix::fs::FallocateFlags;
use rustix::io::Errno;

use crate::error::LogError;

/// Creates the file at `path` (which must not exist) with `len` bytes, all
/// allocated. On failure the file is removed.
pub(crate) fn create_allocated(path: &Path, len: u64) -> Result<File, LogError> {
    let file = create_new(path).map_err(|e| LogError::io(format!("creating {}", path.display()), e))?;
    let allocated = match fallocate(&file, len) {
        Err(e) if unsupported(&e) => write_zeros(&file, len),
        other => other,
    };
    match allocated {
        Ok(()) => Ok(file),
        Err(e) => {
            drop(file);
            remove_half_made(path);
            Err(allocation_error(path, len, e))
        }
    }
}

/// Allocates any blocks the existing file at `path` lacks, up to `len`
/// bytes (its length). A filesystem without `fallocate` is left as it is.
pub(crate) fn allocate_existing(file: &File, path: &Path, len: u64) -> Result<(), LogError> {
    match fallocate(file, len) {
        Err(e) if unsupported(&e) => {
            tracing::debug!(path = %path.display(), error = %e, "no fallocate here: the ring file's blocks are not checked");
            Ok(())
        }
        other => other.map_err(|e| allocation_error(path, len, e)),
    }
}

/// Removes a ring file that could not be made whole (saying so if even
/// that fails).
pub(crate) fn remove_half_made(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        tracing::error!(path = %path.display(), error = %e, "could not remove a half-made ring file");
    }
}

/// fsyncs the directory holding `path`, so that the file's name is durable.
pub(crate) fn sync_parent_dir(path: &Path) -> Result<(), LogError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LogError::io(format!("fsync of the directory {}", dir.display()), e))
}

fn create_new(path: &Path) -> io::Result<File> {
    fail_point!("ring::create", |arg| Err(crate::failpoints::injected(arg)));
    OpenOptions::new().read(true).write(true).create_new(true).open(path)
}

fn fallocate(file: &File, len: u64) -> io::Result<()> {
    fail_point!("ring::fallocate", |arg| Err(crate::failpoints::injected(arg)));
    rustix::fs::fallocate(file, FallocateFlags::empty(), 0, len).map_err(io::Error::from)
}

/// The filesystem (or the platform) has no `fallocate`: EOPNOTSUPP, ENOSYS,
/// or EINVAL (what `posix_fallocate` says on some systems; our offset and
/// length are valid).
fn unsupported(e: &io::Error) -> bool {
    [Errno::OPNOTSUPP, Errno::NOSYS, Errno::INVAL]
        .iter()
        .any(|errno| e.raw_os_error() == Some(errno.raw_os_error()))
}

/// Allocates by writing zeros over the whole (new, empty) file.
fn write_zeros(file: &File, len: u64) -> io::Result<()> {
    let zeros = vec![0u8; 1 << 20];
    let mut at = 0u64;
    while at < len {
        // At most 1 MiB: fits in usize.
        let n = (len - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

fn allocation_error(path: &Path, len: u64, e: io::Error) -> LogError {
    let context = if e.kind() == io::ErrorKind::StorageFull {
        format!(
            "allocating {len} bytes for {}: no space left on the device",
            path.display()
        )
    } else {
        format!("allocating {len} bytes for {}", path.display())
    };
    LogError::io(context, e)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn a_created_file_has_every_block() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ring.log");
        let len = 4096 + 256 * 1024;
        let file = create_allocated(&path, len).expect("create");
        let meta = file.metadata().expect("metadata");
        assert_eq!(meta.len(), len);
        assert!(
            meta.blocks() * 512 >= len,
            "{} blocks of 512 for {len} bytes",
            meta.blocks()
        );
        assert!(
            create_allocated(&path, len).is_err(),
            "an existing file is not replaced"
        );
        allocate_existing(&file, &path, len).expect("allocated already");
        sync_parent_dir(&path).expect("sync dir");
    }

    #[test]
    fn the_zero_fallback_allocates_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("zeros");
        let file = File::create_new(&path).expect("create");
        let len = 3 * (1 << 20) + 4096;
        write_zeros(&file, len).expect("zeros");
        let meta = file.metadata().expect("metadata");
        assert_eq!(meta.len(), len);
        assert!(meta.blocks() * 512 >= len);
    }

    #[test]
    fn allocating_an_existing_sparse_file_fills_its_holes_and_keeps_its_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sparse");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .expect("create");
        let len = 1 << 20;
        file.set_len(len).expect("set_len");
        file.write_all_at(b"kept", 5000).expect("write");
        allocate_existing(&file, &path, len).expect("allocate");
        let meta = file.metadata().expect("metadata");
        assert_eq!(meta.len(), len);
        assert!(meta.blocks() * 512 >= len, "{} blocks", meta.blocks());
        let mut back = [0u8; 4];
        file.read_exact_at(&mut back, 5000).expect("read");
        assert_eq!(&back, b"kept");
    }

    #[test]
    fn errors_name_the_file_and_say_no_space() {
        let e = allocation_error(Path::new("/d/ring.log"), 10, io::Error::from(Errno::NOSPC));
        let text = e.to_string();
        assert!(text.contains("/d/ring.log") && text.contains("no space"), "{text}");
        let e = allocation_error(Path::new("/d/ring.log"), 10, io::Error::from(Errno::IO));
        assert!(!e.to_string().contains("no space"));
        assert!(unsupported(&io::Error::from(Errno::OPNOTSUPP)));
        assert!(!unsupported(&io::Error::from(Errno::NOSPC)));
    }
}
