//! A single-node etcd on loopback for tests and demos: Debian's
//! `etcd-server` (3.4) on free 127.0.0.1 ports with a data directory it is
//! given, waited on until healthy (bounded), killed when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::etcd::Etcd;

/// Why a local etcd did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalEtcdError {
    /// No `etcd` binary on PATH, /usr/bin or /usr/sbin.
    #[error("etcd is not installed (Debian: apt-get install etcd-server)")]
    NotInstalled,
    /// Spawning it, or its data directory, failed.
    #[error("starting etcd: {0}")]
    Io(#[from] std::io::Error),
    /// It did not answer /health in time (its log is in the data directory).
    #[error("etcd did not become healthy within {0:?}; see {1}")]
    NotHealthy(Duration, PathBuf),
}

/// A running etcd this process started.
#[derive(Debug)]
pub struct LocalEtcd {
    child: Child,
    url: String,
    dir: PathBuf,
}

fn find_etcd() -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file())
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Whether an etcd binary is installed.
pub fn etcd_installed() -> bool {
    find_etcd().is_some()
}

impl LocalEtcd {
    /// Starts etcd with its data under `dir` (created), waiting up to 20 s
    /// for it to be healthy. Two attempts (a free port can be taken between
    /// choosing and binding it).
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = std::env::temp_dir().join("ringkv-etcd-demo");
    /// let etcd = ringkv_examples::coord::LocalEtcd::start(&dir)?;
    /// let client = etcd.client()?;
    /// client.put(b"/hello", b"world", None)?;
    /// # Ok(()) }
    /// ```
    pub fn start(dir: &Path) -> Result<LocalEtcd, LocalEtcdError> {
        let bin = find_etcd().ok_or(LocalEtcdError::NotInstalled)?;
        let mut last = None;
        for attempt in 0..2 {
            match Self::try_start(&bin, &dir.join(format!("etcd-{attempt}"))) {
                Ok(e) => return Ok(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(LocalEtcdError::NotInstalled))
    }

    fn try_start(bin: &Path, dir: &Path) -> Result<LocalEtcd, LocalEtcdError> {
        std::fs::create_dir_all(dir)?;
        let client = format!("http://127.0.0.1:{}", free_port()?);
        let peer = format!("http://127.0.0.1:{}", free_port()?);
        let log = std::fs::File::create(dir.join("etcd.log"))?;
        let child = Command::new(bin)
            .arg("--name")
            .arg("ringkv")
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("ringkv={peer}")])
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()?;
        let mut etcd = LocalEtcd {
            child,
            url: client,
            dir: dir.to_path_buf(),
        };
        let wait = Duration::from_secs(20);
        let deadline = Instant::now() + wait;
        let probe = etcd.client().map(|c| c.with_timeout(Duration::from_millis(500)));
        while Instant::now() < deadline {
            if let Ok(Some(_)) = etcd.child.try_wait() {
                break;
            }
            if probe.as_ref().is_ok_and(Etcd::healthy) {
                return Ok(etcd);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        etcd.kill();
        Err(LocalEtcdError::NotHealthy(wait, etcd.dir.join("etcd.log")))
    }

    /// The client URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A client of it.
    pub fn client(&self) -> Result<Etcd, super::EtcdError> {
        Etcd::new(&self.url)
    }

    /// The etcd process id (to pause it in tests).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for LocalEtcd {
    fn drop(&mut self) {
        self.kill();
    }
}
