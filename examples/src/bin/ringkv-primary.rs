//! `ringkv-primary`: serves the Redis protocol on 127.0.0.1:6379 over a
//! data directory `./ringkv-data`, and replication (QUIC) on
//! 127.0.0.1:7379. `--help` lists the flags.

fn main() {
    std::process::exit(ringkv_examples::server::cli::run(
        ringkv_examples::server::NodeRole::Primary,
    ));
}
