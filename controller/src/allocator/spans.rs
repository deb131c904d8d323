//! The free addresses of one range, kept as maximal free spans so that memory
//! grows with the number of allocations and never with the range's size.

use std::collections::{BTreeMap, BTreeSet};

use ferrolb_config::Family;

/// Whether an IPv4 address (as an integer) ends in `.0` or `.255`: some old
/// clients and routers mistake them for network or broadcast addresses.
fn is_buggy(address: u128) -> bool {
    matches!(address & 0xff, 0x00 | 0xff)
}

/// How many addresses of `first..=last` end in `.0` or `.255`.
pub(super) fn buggy_count(first: u128, last: u128) -> u128 {
    // Addresses `n <= x` with `n % 256 == r`, for r in {0, 255}.
    let upto = |x: u128, r: u128| if x < r { 0 } else { (x - r) / 256 + 1 };
    let below = |r| first.checked_sub(1).map_or(0, |x| upto(x, r));
    (upto(last, 0) - below(0)) + (upto(last, 255) - below(255))
}

/// The free addresses of one range `first..=last`.
///
/// `spans` maps the start of each maximal free span to its end; spans are
/// disjoint and never adjacent, so there are at most one more of them than
/// there are taken addresses. When the range skips buggy addresses, `usable`
/// indexes the spans that hold at least one address that may be handed out,
/// so finding the lowest one never walks spans made only of `.255`/`.0`.
#[derive(Debug, Clone)]
pub(super) struct FreeSpans {
    spans: BTreeMap<u128, u128>,
    /// Starts of the spans holding an allocatable address; maintained only
    /// when `skip_buggy` is set (otherwise every span qualifies).
    usable: BTreeSet<u128>,
    skip_buggy: bool,
}

impl FreeSpans {
    /// A wholly free range.
    pub(super) fn new(first: u128, last: u128, family: Family, avoid_buggy_ips: bool) -> Self {
        let mut free = FreeSpans {
            spans: BTreeMap::new(),
            usable: BTreeSet::new(),
            skip_buggy: avoid_buggy_ips && family == Family::V4,
        };
        free.insert(first, last);
        free
    }

    /// Whether `address` may be handed out from this range at all.
    pub(super) fn allocatable(&self, address: u128) -> bool {
        !(self.skip_buggy && is_buggy(address))
    }

    /// The lowest free address that may be handed out: O(log n).
    pub(super) fn lowest(&self) -> Option<u128> {
        if self.skip_buggy {
            let start = *self.usable.first()?;
            self.first_allocatable(start)
        } else {
            self.spans.first_key_value().map(|(start, _)| *start)
        }
    }

    /// Marks `address` taken; false if it was not free. O(log n).
    pub(super) fn take(&mut self, address: u128) -> bool {
        let Some((&start, &end)) = self.spans.range(..=address).next_back() else {
            return false;
        };
        if end < address {
            return false;
        }
        self.remove(start);
        if start < address {
            self.insert(start, address - 1);
        }
        if address < end {
            self.insert(address + 1, end);
        }
        true
    }

    /// Marks `address` free again, merging it with its free neighbours.
    /// O(log n). The address must have been taken.
    pub(super) fn put(&mut self, address: u128) {
        let mut start = address;
        let mut end = address;
        if let Some(before) = address.checked_sub(1)
            && let Some((&s, &e)) = self.spans.range(..=before).next_back()
            && e == before
        {
            self.remove(s);
            start = s;
        }
        if let Some(after) = address.checked_add(1)
            && let Some(&e) = self.spans.get(&after)
        {
            self.remove(after);
            end = e;
        }
        self.insert(start, end);
    }

    /// The lowest address of `start..` that may be handed out, if it lies in
    /// the span starting at `start`.
    fn first_allocatable(&self, start: u128) -> Option<u128> {
        let end = *self.spans.get(&start)?;
        let candidate = if !self.skip_buggy {
            start
        } else {
            match start & 0xff {
                0x00 => start + 1,
                0xff => start + 2,
                _ => start,
            }
        };
        (candidate <= end).then_some(candidate)
    }

    fn insert(&mut self, start: u128, end: u128) {
        self.spans.insert(start, end);
        if self.skip_buggy && self.first_allocatable(start).is_some() {
            self.usable.insert(start);
        }
    }

    fn remove(&mut self, start: u128) {
        self.spans.remove(&start);
        if self.skip_buggy {
            self.usable.remove(&start);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> u128 {
        u128::from(u32::from_be_bytes([a, b, c, d]))
    }

    #[test]
    fn take_and_put_keep_spans_maximal() {
        let mut free = FreeSpans::new(10, 20, Family::V6, false);
        assert!(free.take(10));
        assert!(free.take(12));
        assert!(!free.take(12), "an address is taken once");
        assert_eq!(free.lowest(), Some(11));
        free.put(10);
        assert_eq!(free.lowest(), Some(10));
        free.put(12);
        assert_eq!(free.spans.len(), 1, "freeing everything merges back");
        assert_eq!(free.spans.get(&10), Some(&20));
    }

    #[test]
    fn the_ends_of_the_address_space_do_not_overflow() {
        let mut free = FreeSpans::new(u128::MAX - 1, u128::MAX, Family::V6, false);
        assert!(free.take(u128::MAX));
        free.put(u128::MAX);
        let mut low = FreeSpans::new(0, 1, Family::V6, false);
        assert!(low.take(0));
        low.put(0);
        assert_eq!(low.lowest(), Some(0));
    }

    #[test]
    fn avoiding_buggy_ips_skips_spans_of_only_dot255_and_dot0() {
        let first = v4(10, 0, 0, 253);
        let last = v4(10, 0, 1, 2);
        let mut free = FreeSpans::new(first, last, Family::V4, true);
        assert_eq!(free.lowest(), Some(v4(10, 0, 0, 253)));
        assert!(free.take(v4(10, 0, 0, 253)));
        assert_eq!(free.lowest(), Some(v4(10, 0, 0, 254)));
        assert!(free.take(v4(10, 0, 0, 254)));
        assert_eq!(free.lowest(), Some(v4(10, 0, 1, 1)), ".255 and .0 skipped");
        assert!(free.take(v4(10, 0, 1, 1)));
        assert!(free.take(v4(10, 0, 1, 2)));
        assert_eq!(free.lowest(), None, "only buggy addresses are left");
        assert!(!free.allocatable(v4(10, 0, 0, 255)));
    }

    #[test]
    fn buggy_count_counts_dot0_and_dot255() {
        assert_eq!(buggy_count(v4(10, 0, 0, 0), v4(10, 0, 255, 255)), 512);
        assert_eq!(buggy_count(v4(10, 0, 0, 1), v4(10, 0, 0, 254)), 0);
        assert_eq!(buggy_count(v4(10, 0, 0, 255), v4(10, 0, 1, 0)), 2);
        assert_eq!(buggy_count(0, 0), 1);
    }
}
