//! `ringkv-follower`: serves the Redis protocol (read-only) on
//! 127.0.0.1:6380 over `./ringkv-follower-data`, following the primary's
//! replication at 127.0.0.1:7379 with the development CA in
//! `./ringkv-data/tls`. `--help` lists the flags.

fn main() {
    std::process::exit(ringkv_examples::server::cli::run(
        ringkv_examples::server::NodeRole::Follower,
    ));
}
