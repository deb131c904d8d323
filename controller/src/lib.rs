//! `ferrolb-controller`: allocates external addresses to LoadBalancer
//! Services and writes them to their status. Newcomers start with
//! [`allocator`], the pure core every reconcile goes through.

pub mod allocator;
