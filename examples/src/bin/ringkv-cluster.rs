//! `ringkv-cluster --map FILE <create|add-shard|move-slots|show>`: the slot
//! map of a ringkv cluster (see `ringkv_examples::cluster::tool`).
//! `--help` lists the flags.

use clap::Parser;

fn main() {
    let args = ringkv_examples::cluster::tool::Args::parse();
    match ringkv_examples::cluster::tool::run(args) {
        Ok(text) => print!("{text}"),
        Err(e) => {
            eprintln!("ringkv-cluster: {e}");
            std::process::exit(1);
        }
    }
}
