//! ferrolb's end-to-end harness: a real control plane and real network
//! namespaces.
