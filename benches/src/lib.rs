//! Shared helpers for the ringkv benches.
