//! `ferrolb-speaker` elects one owner node per LoadBalancer address and, on
//! the owner, answers ARP and IPv6 Neighbor Solicitations for it.
//!
//! [`wire`] parses and builds the frames; it opens no socket.

pub mod wire;
