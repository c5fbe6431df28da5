//! `libringkv`: the C ABI of the ringkv engine and its replication, for C,
//! PHP (FFI) and Python (ctypes). The header `include/ringkv.h` is
//! generated from this crate by cbindgen; its comments are these docs.
//!
//! Conventions (rustls-ffi, sqlite, rocksdb's `c.h`):
//! - every call returns a [`ringkv_status`]; outputs go through
//!   out-parameters written only on success;
//! - [`ringkv_last_error`] gives the calling thread's last failure message;
//! - keys and values are `(const char *ptr, size_t len)`, binary-safe; a
//!   list of byte strings is one concatenation plus an array of lengths;
//! - values come back as library-owned [`ringkv_buf`] (a `NULL` pointer is
//!   nil), freed with [`ringkv_buf_free`]; arrays likewise;
//! - every exported function runs inside a panic boundary; NULL handles,
//!   NULL buffers with non-zero lengths, out-of-range integers standing for
//!   enums, and freed handles (where detectable, see `handle.rs`) give
//!   `RINGKV_INVALID_ARGUMENT`.
//!
//! Layout: `status.rs`, `last_error.rs` (vocabulary), `args.rs`, `buf.rs`,
//! `handle.rs` (the only modules with `unsafe` blocks: reading the caller's
//! memory, handing out and taking back owned memory and handles), then one
//! module per group of calls. The exported functions need `#[no_mangle]`,
//! which the `unsafe_code` lint counts, hence the crate-wide allow below;
//! `unsafe` blocks themselves appear only in the three modules named.
#![allow(unsafe_code)]
// The C names (`ringkv_engine`, `ringkv_status`, ...) are the ABI.
#![allow(non_camel_case_types)]

mod args;
mod boundary;
mod buf;
mod handle;
mod last_error;
mod status;

mod batch;
mod engine_api;
mod hashes;
mod keys;
mod persistence;
mod replication_api;
mod scan;
mod strings;

pub use batch::*;
pub use buf::*;
pub use engine_api::*;
pub use hashes::*;
pub use keys::*;
pub use last_error::*;
pub use persistence::*;
pub use replication_api::*;
pub use scan::*;
pub use status::*;
pub use strings::*;
