//! ferrolb's end-to-end harness: a real control plane ([`control_plane`]),
//! real network namespaces ([`netns`]), builders for the objects a kubelet and
//! controller-manager would otherwise create ([`objects`]), and waits with
//! deadlines ([`wait`]), and a real cluster with ferrolb deployed from its
//! image and manifests ([`real_cluster`]), and the real `helm` client on
//! ferrolb's chart ([`helm`]). Tests live in `tests/*.rs`, one
//! behaviour per file.

pub mod cluster;
pub mod control_plane;
pub mod daemons;
pub mod helm;
pub mod invariants;
pub mod netns;
pub mod objects;
pub mod real_cluster;
pub mod wait;

pub use control_plane::ControlPlane;
pub use daemons::Daemon;
pub use netns::{Lan, Netns};
pub use wait::wait_for;
