//! Opaque handles: how a Rust object becomes a C pointer and back.
//!
//! Every handle points to a [`Slot`] holding a magic word (which kind of
//! handle, or freed) and the object. A call checks the pointer is not
//! NULL, is aligned, and holds a live slot of the expected kind, so a NULL
//! handle, a handle of the wrong kind, or a freed handle is
//! `RINGKV_INVALID_ARGUMENT` instead of undefined behaviour. Freed slots
//! are not returned to the allocator but kept in a pool of the last
//! [`POOL_MAX`] freed, reused oldest first: reading a recently freed
//! handle's magic therefore reads live memory. The detection has limits,
//! written in the header: once a freed slot is reused by a new handle of
//! the same kind, the old pointer reaches the new object; and a slot freed
//! more than [`POOL_MAX`] frees ago goes back to the allocator.
//!
//! Sharing: an engine, primary or follower slot is only read between its
//! creation and its free, so several threads may use it at once; cursors
//! and batches are changed through `&mut` and must be used by one thread
//! at a time (the header says so). Freeing a handle while another thread
//! uses it is the caller's bug, as with any C library.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::status::Fail;

/// What a slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub(crate) enum Kind {
    Engine = 1,
    ScanCursor = 2,
    HScanCursor = 3,
    Batch = 4,
    Primary = 5,
    Follower = 6,
}

impl Kind {
    fn magic(self) -> u64 {
        LIVE | self as u64
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Engine => "engine",
            Kind::ScanCursor => "scan cursor",
            Kind::HScanCursor => "hash-scan cursor",
            Kind::Batch => "batch",
            Kind::Primary => "primary",
            Kind::Follower => "follower",
        }
    }
}

/// A live slot's magic, with the kind in the low byte ("ringkv" + kind).
const LIVE: u64 = 0x7269_6e67_6b76_0000;
/// A freed slot's magic.
const DEAD: u64 = 0xdead_6b76_dead_0000;
/// Freed slots kept for reuse (a slot is a few dozen bytes).
const POOL_MAX: usize = 1024;

/// The memory behind every handle.
pub(crate) struct Slot {
    magic: AtomicU64,
    object: UnsafeCell<Option<Box<dyn std::any::Any + Send + Sync>>>,
}

// SAFETY: `object` is written only by `new` (before the pointer is given
// out) and by `free` (which the header makes exclusive with every other use
// of the handle); shared uses only read it, and the objects are Send + Sync.
// Cursors and batches, reached through `&mut`, are single-thread by the
// header's contract.
unsafe impl Sync for Slot {}

/// Freed slots, as addresses, oldest first.
static POOL: Mutex<std::collections::VecDeque<usize>> = Mutex::new(std::collections::VecDeque::new());

/// Makes a handle of `kind` owning `object`.
pub(crate) fn new<H, T: Send + Sync + 'static>(kind: Kind, object: T) -> *mut H {
    let object: Box<dyn std::any::Any + Send + Sync> = Box::new(object);
    // The oldest freed slot: a recently freed handle stays detectable.
    let reused = POOL.lock().pop_front();
    let slot: *mut Slot = match reused {
        Some(addr) => {
            let slot = addr as *mut Slot;
            // SAFETY: the pool holds only slots made by `Box::into_raw` below
            // and freed by `free` (object None, magic DEAD); nobody else owns
            // them, and the header forbids using a freed handle concurrently.
            unsafe {
                *(*slot).object.get() = Some(object);
                (*slot).magic.store(kind.magic(), Ordering::Release);
            }
            slot
        }
        None => Box::into_raw(Box::new(Slot {
            magic: AtomicU64::new(kind.magic()),
            object: UnsafeCell::new(Some(object)),
        })),
    };
    slot.cast::<H>()
}

/// The slot behind `ptr`, if it is a live handle of `kind`.
fn live<'a, H>(ptr: *const H, kind: Kind) -> Result<&'a Slot, Fail> {
    let slot = ptr.cast::<Slot>();
    if slot.is_null() {
        return Err(Fail::invalid(format!("the {} handle is NULL", kind.name())));
    }
    if !slot.is_aligned() {
        return Err(Fail::invalid(format!(
            "the {} handle is not a ringkv handle",
            kind.name()
        )));
    }
    // SAFETY: non-NULL and aligned; by the header's contract the pointer was
    // returned by this library, and slots are never given back to the
    // allocator while in the pool, so the magic word is readable.
    let slot = unsafe { &*slot };
    match slot.magic.load(Ordering::Acquire) {
        m if m == kind.magic() => Ok(slot),
        DEAD => Err(Fail::invalid(format!("the {} handle was already freed", kind.name()))),
        _ => Err(Fail::invalid(format!("the handle is not a {} handle", kind.name()))),
    }
}

/// Shared access to the object of a live handle of `kind`.
pub(crate) fn get<'a, H, T: 'static>(ptr: *const H, kind: Kind) -> Result<&'a T, Fail> {
    let slot = live(ptr, kind)?;
    // SAFETY: a live slot's object is only replaced by `free`, which the
    // header makes exclusive with this use.
    let object = unsafe { &*slot.object.get() };
    object
        .as_ref()
        .and_then(|o| o.downcast_ref::<T>())
        .ok_or_else(|| Fail::invalid(format!("the {} handle is empty", kind.name())))
}

/// Exclusive access to the object of a live handle of `kind` (cursors,
/// batches and followers: one thread at a time, by the header's contract).
pub(crate) fn get_mut<'a, H, T: 'static>(ptr: *mut H, kind: Kind) -> Result<&'a mut T, Fail> {
    let slot = live(ptr.cast_const(), kind)?;
    // SAFETY: as in `get`, and the header gives this call exclusive use of
    // a handle of this kind.
    let object = unsafe { &mut *slot.object.get() };
    object
        .as_mut()
        .and_then(|o| o.downcast_mut::<T>())
        .ok_or_else(|| Fail::invalid(format!("the {} handle is empty", kind.name())))
}

/// Frees a handle of `kind`: drops its object and marks the slot freed.
/// NULL is a no-op; a freed handle, or one of another kind, is reported
/// through the last error and otherwise ignored.
pub(crate) fn free<H>(ptr: *mut H, kind: Kind) {
    drop(take(ptr, kind));
}

/// As [`free`], but hands the object to the caller (to close it its own
/// way) instead of dropping it.
pub(crate) fn take<H>(ptr: *mut H, kind: Kind) -> Option<Box<dyn std::any::Any + Send + Sync>> {
    if ptr.is_null() {
        return None;
    }
    let slot = match live(ptr.cast_const(), kind) {
        Ok(slot) => slot,
        Err(fail) => {
            crate::last_error::set(&fail.message);
            return None;
        }
    };
    if slot
        .magic
        .compare_exchange(kind.magic(), DEAD, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        crate::last_error::set(&format!("the {} handle was already freed", kind.name()));
        return None;
    }
    // SAFETY: the magic moved from live to DEAD in this call, so this is the
    // one free of this handle, and the header makes it exclusive with other
    // uses.
    let object = unsafe { (*slot.object.get()).take() };
    let mut pool = POOL.lock();
    pool.push_back(ptr as usize);
    let released = if pool.len() > POOL_MAX { pool.pop_front() } else { None };
    drop(pool);
    if let Some(oldest) = released {
        // SAFETY: every pooled slot was made by `Box::into_raw` in `new` and
        // freed by `take` (object taken, magic DEAD); popped from the pool,
        // nothing else owns it. A stale handle to it is beyond detection, as
        // the header says.
        drop(unsafe { Box::from_raw(oldest as *mut Slot) });
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Opaque;

    #[test]
    fn freed_and_wrong_kind_handles_are_refused() {
        let h: *mut Opaque = new(Kind::Batch, 7u32);
        assert_eq!(*get::<_, u32>(h, Kind::Batch).expect("live"), 7);
        *get_mut::<_, u32>(h, Kind::Batch).expect("live") = 8;
        assert_eq!(*get::<_, u32>(h, Kind::Batch).expect("live"), 8);
        assert!(get::<_, u32>(h, Kind::Engine).is_err(), "wrong kind");
        free(h, Kind::Batch);
        let e = get::<_, u32>(h, Kind::Batch).expect_err("freed");
        assert!(e.message.contains("already freed"), "{}", e.message);
        free(h, Kind::Batch); // twice: reported, not a crash
        assert!(get::<Opaque, u32>(std::ptr::null(), Kind::Batch).is_err());
        // The slot is reused by the next handle.
        let again: *mut Opaque = new(Kind::Engine, 1u8);
        assert!(get::<_, u8>(again, Kind::Engine).is_ok());
        free(again, Kind::Engine);
    }
}
