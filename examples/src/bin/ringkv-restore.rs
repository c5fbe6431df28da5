//! `ringkv-restore --at <offset | time> --to DIR`: rebuilds a data
//! directory from a `ringkv-backup` directory; `--list` shows what can be
//! restored. `--help` lists the flags.

fn main() {
    std::process::exit(ringkv_examples::backup::cli::run_restore());
}
