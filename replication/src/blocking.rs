//! Blocking handles for users without an async runtime (and the C ABI):
//! each owns a small tokio runtime on its own threads.

use std::net::SocketAddr;
use std::time::Duration;

use ringkv::{Engine, Promotion};

use crate::config::{FollowerConfig, PrimaryConfig};
use crate::stats::{PrimaryStats, ReplicaInfo};
use crate::tls::TlsMaterial;
use crate::ReplError;

fn runtime(name: &str) -> Result<tokio::runtime::Runtime, ReplError> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()?)
}

/// A primary with its own runtime. See [`crate::Primary`].
#[derive(Debug)]
pub struct Primary {
    inner: Option<crate::Primary>,
    runtime: tokio::runtime::Runtime,
}

impl Primary {
    /// Starts serving `engine`'s ring on `config.listen`.
    pub fn start(engine: Engine, config: PrimaryConfig, tls: TlsMaterial) -> Result<Primary, ReplError> {
        let runtime = runtime("ringkv-repl-primary")?;
        let inner = runtime.block_on(crate::Primary::start(engine, config, tls))?;
        Ok(Primary {
            inner: Some(inner),
            runtime,
        })
    }

    fn get(&self) -> &crate::Primary {
        self.inner.as_ref().expect("present until drop")
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.get().local_addr()
    }

    /// Replication stats.
    pub fn stats(&self) -> PrimaryStats {
        self.get().stats()
    }

    /// Blocks until `n` followers acked applying `offset` or the timeout
    /// passes; returns how many did.
    pub fn wait_for_followers(&self, offset: u64, n: usize, timeout: Duration) -> usize {
        self.runtime.block_on(self.get().wait_for_followers(offset, n, timeout))
    }

    /// Closes every connection and the endpoint.
    pub fn shutdown(mut self) {
        if let Some(inner) = self.inner.take() {
            self.runtime.block_on(inner.shutdown());
        }
    }
}

impl Drop for Primary {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            let _guard = self.runtime.enter();
            drop(inner);
        }
    }
}

/// A follower with its own runtime. See [`crate::Follower`].
#[derive(Debug)]
pub struct Follower {
    inner: Option<crate::Follower>,
    runtime: tokio::runtime::Runtime,
}

impl Follower {
    /// Makes `engine` a follower of `config.primary` and starts replicating.
    pub fn start(engine: Engine, config: FollowerConfig, tls: TlsMaterial) -> Result<Follower, ReplError> {
        let runtime = runtime("ringkv-repl-follower")?;
        let inner = runtime.block_on(crate::Follower::start(engine, config, tls))?;
        Ok(Follower {
            inner: Some(inner),
            runtime,
        })
    }

    /// Replication stats.
    pub fn info(&self) -> ReplicaInfo {
        self.inner
            .as_ref()
            .map(|f| f.info())
            .unwrap_or_else(|| ReplicaInfo::new(String::new()))
    }

    /// Stops replicating (the engine stays read-only).
    pub fn stop(mut self) {
        if let Some(inner) = self.inner.take() {
            self.runtime.block_on(inner.stop());
        }
    }

    /// Stops replicating and promotes the engine to primary.
    pub fn promote(mut self) -> Result<Promotion, ReplError> {
        match self.inner.take() {
            Some(inner) => self.runtime.block_on(inner.promote()),
            None => Err(ReplError::Config("follower already stopped".into())),
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            self.runtime.block_on(inner.stop());
        }
    }
}
