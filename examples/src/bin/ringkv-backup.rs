//! `ringkv-backup`: follows the primary at 127.0.0.1:7379 as an observer
//! (never counted by WAIT) and keeps a point-in-time backup in
//! `./ringkv-backup`. `--help` lists the flags; `ringkv-restore` restores.

fn main() {
    std::process::exit(ringkv_examples::backup::cli::run_backup());
}
