//! `ferrolb-speaker`: announces allocated addresses from one node.

use clap::Parser;

/// Answers ARP and NDP for the LoadBalancer addresses this node owns.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
