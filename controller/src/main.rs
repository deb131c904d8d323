//! `ferrolb-controller`: allocates addresses to LoadBalancer Services.

use clap::Parser;

/// Allocates external addresses to `type: LoadBalancer` Services from the
/// pools in ferrolb's ConfigMap.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
