//! `ferrolb-controller`: allocates external addresses to LoadBalancer
//! Services and writes them to their status. Newcomers start with
//! [`allocator`], the pure core every reconcile goes through.

pub mod allocator;
pub mod config_watch;
pub mod events;
pub mod leader;
pub mod metrics;
pub mod namespaces;
pub mod plan;
pub mod preview;
pub mod reconcile;
pub mod status;
