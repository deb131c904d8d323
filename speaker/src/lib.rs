//! `ferrolb-speaker` elects one owner node per LoadBalancer address and, on
//! the owner, answers ARP and IPv6 Neighbor Solicitations for it.
//!
//! The pure cores come first: [`wire`] parses and builds frames, [`respond`]
//! decides what to answer to one received frame, [`election`] decides which
//! node owns an address. None of them opens a socket, reads a clock or logs;
//! the shells around them do.

pub mod election;
pub mod flags;
pub mod health;
pub mod l2_status;
pub mod liveness;
pub mod ownership;
pub mod rate_limit;
pub mod respond;
pub mod seal;
pub mod trim;
pub mod wire;

// Shells: the announcer owns the sockets and the per-interface tasks.
pub mod announcer;
pub mod interfaces;
pub mod socket;

// Shells: the membership's socket, the cluster view, the discovery record,
// the metrics endpoint.
pub mod l2_status_writer;
pub mod members;
pub mod metrics;
pub mod node_lease;
pub mod watch;
