//! Reading a hostile config costs bounded memory: the heap's peak while a
//! config is read is measured by counting every allocation of this test
//! binary, which holds this one test so nothing else allocates meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use ferrolb_config::{Config, check};

/// The system allocator, counting the bytes in use and their peak.
struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// A global allocator can only be written with `unsafe`; this one only adds
// bookkeeping around the system allocator's own calls.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = IN_USE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The most the heap grew above its level before `read` ran.
fn peak_growth(read: impl FnOnce()) -> usize {
    let before = IN_USE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    read();
    PEAK.load(Ordering::Relaxed) - before
}

/// A config aliasing one `scalar_bytes`-long scalar `copies` times.
fn alias_bomb(scalar_bytes: usize, copies: usize) -> String {
    let mut text = format!(
        "address-pools:\n- name: &big {}\n  protocol: layer2\n  addresses: [198.51.100.0/24]\n  interfaces:\n",
        "x".repeat(scalar_bytes)
    );
    for _ in 0..copies {
        text.push_str("  - *big\n");
    }
    text
}

const MIB: usize = 1 << 20;

#[test]
fn an_alias_bomb_is_refused_within_a_few_mebibytes_of_heap() {
    // 163 KB of text standing for 300 MB of values.
    let bomb = alias_bomb(100_000, 3_000);
    assert!(bomb.len() < 200_000);

    let mut refusal = String::new();
    let grew = peak_growth(|| refusal = Config::from_yaml(&bomb).unwrap_err().to_string());
    eprintln!("reading the bomb grew the heap by {grew} bytes at most");
    assert!(grew < 8 * MIB, "reading the bomb took {grew} bytes of heap");
    assert_eq!(
        refusal,
        "the config expands to more than 2097152 bytes (2 MiB) once its YAML aliases (*name) are replaced by what they name; write the values out instead of aliasing them"
    );

    // The path `check-config` takes, through a manifest, is bounded too.
    let manifest = format!(
        "kind: ConfigMap\napiVersion: v1\nmetadata: {{name: ferrolb-config}}\ndata:\n  config: |\n{}",
        bomb.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    );
    let grew = peak_growth(|| assert!(check(&manifest).failed()));
    eprintln!("checking the bomb's manifest grew the heap by {grew} bytes at most");
    assert!(
        grew < 8 * MIB,
        "checking the bomb took {grew} bytes of heap"
    );
}
