//! The command lines of `ringkv-backup` and `ringkv-restore` (clap flags,
//! logs through `tracing-subscriber` with the `RUST_LOG` filter).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use super::{restore, Backup, BackupOptions, Catalog, RestoreOptions, RetentionConfig, Target, WriterConfig};

/// `ringkv-backup`: follows a primary and keeps a point-in-time backup.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "ringkv-backup: continuous backup of a ringkv primary (point-in-time restore with ringkv-restore)"
)]
pub struct BackupArgs {
    /// The backup directory.
    #[arg(long, default_value = "./ringkv-backup")]
    pub dir: PathBuf,
    /// The primary's replication (QUIC) address.
    #[arg(long, default_value = "127.0.0.1:7379")]
    pub primary: SocketAddr,
    /// Directory of the development TLS material (the primary's).
    #[arg(long, default_value = "./ringkv-data/tls")]
    pub tls_dir: PathBuf,
    /// This backup's name in the primary's stats.
    #[arg(long, default_value = "ringkv-backup")]
    pub name: String,
    /// Seal a segment at this many MiB.
    #[arg(long, default_value_t = 64)]
    pub segment_mb: u64,
    /// Seal a segment with log bytes after this many seconds (what is not
    /// sealed is not restorable yet).
    #[arg(long, default_value_t = 10)]
    pub segment_secs: u64,
    /// Seal an empty segment (time marks only) after this many seconds.
    #[arg(long, default_value_t = 60)]
    pub idle_segment_secs: u64,
    /// Take a snapshot every this many seconds ...
    #[arg(long, default_value_t = 3600)]
    pub snapshot_secs: u64,
    /// ... or after this many MiB of log.
    #[arg(long, default_value_t = 1024)]
    pub snapshot_log_mb: u64,
    /// Keep every moment of the last this many seconds (0: no age limit).
    #[arg(long, default_value_t = 0)]
    pub keep_secs: u64,
    /// Keep at most this many MiB (0: no size limit; size wins over age).
    #[arg(long, default_value_t = 0)]
    pub keep_mb: u64,
    /// The backup follower's ring, MiB (it should hold several segments).
    #[arg(long, default_value_t = 256)]
    pub ring_mb: u64,
}

impl BackupArgs {
    /// The options these flags give.
    pub fn options(&self) -> BackupOptions {
        let mut follower = ringkv_replication::FollowerConfig::new(self.primary);
        follower.name = self.name.clone();
        follower.observer = true;
        let mut engine = ringkv::Config::default();
        engine.log.capacity = self.ring_mb << 20;
        BackupOptions {
            dir: self.dir.clone(),
            follower,
            engine,
            writer: WriterConfig {
                segment_bytes: self.segment_mb << 20,
                segment_interval: Duration::from_secs(self.segment_secs),
                idle_segment_interval: Duration::from_secs(self.idle_segment_secs),
                snapshot_interval: Duration::from_secs(self.snapshot_secs),
                snapshot_log_bytes: self.snapshot_log_mb << 20,
                retention: RetentionConfig {
                    max_age: (self.keep_secs > 0).then(|| Duration::from_secs(self.keep_secs)),
                    max_bytes: (self.keep_mb > 0).then_some(self.keep_mb << 20),
                },
                ..WriterConfig::default()
            },
        }
    }
}

/// `ringkv-restore`: rebuilds a data directory from a backup.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "ringkv-restore: rebuild a data directory as of an offset or a moment of a ringkv-backup"
)]
pub struct RestoreArgs {
    /// The backup directory.
    #[arg(long, default_value = "./ringkv-backup")]
    pub from: PathBuf,
    /// The point: an offset (`N` or `offset:N`), or a moment
    /// (`2025-01-31T12:00:00Z`, `unix:SECONDS`, `ms:UNIX_MS`).
    #[arg(long, required_unless_present = "list")]
    pub at: Option<String>,
    /// The data directory to create (absent or empty).
    #[arg(long, required_unless_present = "list")]
    pub to: Option<PathBuf>,
    /// Only this chain (default: the newest that holds the point).
    #[arg(long)]
    pub chain: Option<u64>,
    /// Show what can be restored, and do nothing else.
    #[arg(long)]
    pub list: bool,
    /// The restored directory's ring, MiB.
    #[arg(long, default_value_t = 256)]
    pub ring_mb: u64,
}

fn init_logs() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// `ringkv-backup`'s main: runs until SIGINT or SIGTERM; the exit code.
pub fn run_backup() -> i32 {
    let args = BackupArgs::parse();
    init_logs();
    let tls = match crate::server::tls::load_or_generate(&args.tls_dir, false) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("ringkv-backup: TLS material in {}: {e}", args.tls_dir.display());
            return 2;
        }
    };
    let backup = match Backup::start(args.options(), tls.client) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("ringkv-backup: {e}");
            return 1;
        }
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [signal_hook_consts::SIGINT, signal_hook_consts::SIGTERM] {
        if let Err(e) = signal_flag(signal, &stop) {
            eprintln!("ringkv-backup: cannot handle signals: {e}");
            return 1;
        }
    }
    tracing::info!(dir = %args.dir.display(), primary = %args.primary, "backing up");
    while !stop.load(std::sync::atomic::Ordering::Acquire) && !backup.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
    }
    tracing::info!("stopping: sealing the current segment");
    match backup.stop() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("ringkv-backup: {e}");
            1
        }
    }
}

mod signal_hook_consts {
    pub const SIGINT: i32 = 2;
    pub const SIGTERM: i32 = 15;
}

/// Sets `flag` when `signal` arrives (on a small tokio runtime).
fn signal_flag(signal: i32, flag: &std::sync::Arc<std::sync::atomic::AtomicBool>) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut stream =
        runtime.block_on(async { tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(signal)) })?;
    let flag = flag.clone();
    std::thread::Builder::new()
        .name("ringkv-backup-signal".into())
        .spawn(move || {
            runtime.block_on(stream.recv());
            flag.store(true, std::sync::atomic::Ordering::Release);
        })?;
    Ok(())
}

/// `ringkv-restore`'s main; the exit code (2: bad arguments or a point
/// the backup does not hold, 1: a failure such as a damaged file).
pub fn run_restore() -> i32 {
    let args = RestoreArgs::parse();
    init_logs();
    if args.list {
        return match Catalog::load(&args.from) {
            Ok(c) => {
                print!("{}", c.describe());
                0
            }
            Err(e) => {
                eprintln!("ringkv-restore: {e}");
                1
            }
        };
    }
    let (Some(at), Some(to)) = (&args.at, &args.to) else {
        eprintln!("ringkv-restore: --at and --to are required (or --list)");
        return 2;
    };
    let target = match at.parse::<Target>() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("ringkv-restore: {e}");
            return 2;
        }
    };
    let mut config = ringkv::Config::default();
    config.log.capacity = args.ring_mb << 20;
    let options = RestoreOptions {
        target,
        chain: args.chain,
        to: to.clone(),
        config,
    };
    match restore(&args.from, &options) {
        Ok(r) => {
            println!(
                "restored {} at offset {} (chain {}, snapshot at {}, {} records replayed): {} keys, digest {:016x}; new history {} (from {} at {})",
                to.display(),
                r.offset,
                r.chain,
                r.snapshot_offset,
                r.records,
                r.keys,
                r.digest,
                r.replid,
                r.prev_replid,
                r.offset
            );
            0
        }
        Err(e @ (super::BackupError::OutOfRange(_) | super::BackupError::Usage(_))) => {
            eprintln!("ringkv-restore: {e}");
            2
        }
        Err(e) => {
            eprintln!("ringkv-restore: {e}");
            1
        }
    }
}
