//! What the hub holds per node, counted allocation by allocation: the controller (records,
//! desired states, statuses, placement, pacing) and the liveness table, for a fleet of
//! `SMALL` and of `LARGE` nodes running one every-node deployment, as `wasmfleet-sim` runs.
//!
//! Why: the hub's memory per node (issue 10: < 1 KiB) was measured only as resident memory of
//! a whole hub under a simulated fleet, which takes minutes and moves with when glibc hands
//! pages back. The live heap is the floor under that figure and is exact: this counts it in
//! seconds, as a slope between the two sizes (what the hub holds at any size is not per node),
//! and names where it goes.
//!
//! Figures per node:
//! - `bytes`: what was asked of the allocator;
//! - `chunks`: what glibc spends on it (each block rounded up to 16 B with its 8 B header,
//!   32 B at least), which is what resident memory is made of;
//! - `blocks`: how many live allocations; every one is a chance to pin a page that a storm's
//!   garbage shared with it;
//! - `peak_*`: the most live `chunks` at once inside the controller's calls (the benchmark's
//!   own work between them not counted) while nodes announce themselves, while the
//!   deployment is applied, and while every node reports it: resident memory follows the
//!   peak unless the garbage is freed in whole pages.
//!
//! Run: `cargo bench -p wasmfleet-hub --bench memory`. Prints one `figures:` line per part.

mod fleet;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};

use wasmfleet_hub::controller::{Config, Controller};
use wasmfleet_hub::model::deployment::PlacementPolicy;
use wasmfleet_hub::reconcile::liveness::Liveness;
use wasmfleet_hub::store::SqliteStore;
use wasmfleet_proto::Presence;

const SMALL: usize = 2_000;
const LARGE: usize = 10_000;

/// Live bytes asked for, glibc chunk bytes, live blocks, and the most chunk bytes seen while
/// [`WATCHING`].
static BYTES: AtomicIsize = AtomicIsize::new(0);
static CHUNKS: AtomicIsize = AtomicIsize::new(0);
static BLOCKS: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);
static WATCHING: AtomicBool = AtomicBool::new(false);

/// What glibc's malloc spends on a block of `size` bytes on 64-bit Linux.
fn chunk(size: usize) -> isize {
    ((size + 8 + 15) & !15).max(32) as isize
}

struct Counting;

// SAFETY: every call is forwarded to `System` unchanged; the counters only observe.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize, chunk(layout.size()), 1);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize), -chunk(layout.size()), -1);
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let (old, new) = (layout.size(), new_size);
        count(new as isize - old as isize, chunk(new) - chunk(old), 0);
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn count(bytes: isize, chunks: isize, blocks: isize) {
    BYTES.fetch_add(bytes, Ordering::Relaxed);
    let now = CHUNKS.fetch_add(chunks, Ordering::Relaxed) + chunks;
    BLOCKS.fetch_add(blocks, Ordering::Relaxed);
    if WATCHING.load(Ordering::Relaxed) {
        PEAK.fetch_max(now, Ordering::Relaxed);
    }
}

/// Runs `f` (a controller call) with the peak watched; returns its result.
fn watched<T>(f: impl FnOnce() -> T) -> T {
    WATCHING.store(true, Ordering::Relaxed);
    let out = f();
    WATCHING.store(false, Ordering::Relaxed);
    out
}

/// The peak since the last call, over `base`, and starts the next phase's peak from now.
fn phase_peak(base: Live) -> isize {
    let peak = PEAK.swap(live().chunks, Ordering::Relaxed);
    peak - base.chunks
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Live bytes, chunks and blocks now.
#[derive(Clone, Copy)]
struct Live {
    bytes: isize,
    chunks: isize,
    blocks: isize,
}

fn live() -> Live {
    Live {
        bytes: BYTES.load(Ordering::Relaxed),
        chunks: CHUNKS.load(Ordering::Relaxed),
        blocks: BLOCKS.load(Ordering::Relaxed),
    }
}

/// What one fleet size cost: the controller and the liveness table, settled, and the peaks
/// of the controller's phases, all measured from before it.
struct Cost {
    controller: Live,
    liveness: Live,
    peaks: [isize; 3],
}

/// The phases whose peaks are reported.
const PHASES: [&str; 3] = ["announce", "apply", "report"];

/// Builds a settled fleet of `n` nodes: announced, one every-node deployment applied, every
/// node reporting it Running, a tick later; and its liveness table. Measures what stays.
fn fleet_of(n: usize, dir: &std::path::Path) -> Cost {
    let names: Vec<String> = (0..n).map(fleet::node_name).collect();
    let before = live();
    phase_peak(before);
    let store = SqliteStore::open(&dir.join(format!("hub-{n}.db"))).expect("store");
    let mut c = Controller::load(Box::new(store), Config::default(), 0).expect("empty store");
    for (i, name) in names.iter().enumerate() {
        let hello = Presence::Online(fleet::hello(i));
        watched(|| c.on_presence(name, hello, 1)).expect("node");
    }
    let announce = phase_peak(before);
    let spec = fleet::spec(0, PlacementPolicy::EveryNode);
    let (_, _, publish) = watched(|| c.apply("agent", spec, 2)).expect("valid spec");
    let apply = phase_peak(before);
    for (node, state) in fleet::desired_states(publish) {
        let status = fleet::running(&state);
        let publish = watched(|| c.on_status(&node, status, 3)).expect("status");
        assert!(publish.is_empty(), "{node} acted on what it was sent");
    }
    watched(|| c.tick(60_000)).expect("tick");
    let report = phase_peak(before);
    let settled = live();
    let mut liveness = Liveness::default();
    for name in &names {
        liveness.connected(name, 60_000);
        liveness.beat(name, 5_000, 60_001);
    }
    let with_liveness = live();
    let cost = Cost {
        controller: diff(settled, before),
        liveness: diff(with_liveness, settled),
        peaks: [announce, apply, report],
    };
    drop((c, liveness));
    cost
}

fn diff(a: Live, b: Live) -> Live {
    Live {
        bytes: a.bytes - b.bytes,
        chunks: a.chunks - b.chunks,
        blocks: a.blocks - b.blocks,
    }
}

/// Prints the slope of `part` between the two sizes, and of its phases' peaks.
fn slope(part: &str, small: Live, large: Live, peaks: Option<([isize; 3], [isize; 3])>) {
    let n = (LARGE - SMALL) as f64;
    let per = |f: fn(&Live) -> isize| (f(&large) - f(&small)) as f64 / n;
    let mut line = format!(
        "figures: part={part} bytes={:.0} chunks={:.0} blocks={:.1}",
        per(|l| l.bytes),
        per(|l| l.chunks),
        per(|l| l.blocks)
    );
    if let Some((small, large)) = peaks {
        for (i, phase) in PHASES.iter().enumerate() {
            line += &format!(" peak_{phase}={:.0}", (large[i] - small[i]) as f64 / n);
        }
    }
    println!("{line}");
}

fn main() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let small = fleet_of(SMALL, dir.path());
    let large = fleet_of(LARGE, dir.path());
    slope(
        "controller",
        small.controller,
        large.controller,
        Some((small.peaks, large.peaks)),
    );
    slope("liveness", small.liveness, large.liveness, None);
    let sum = |c: &Cost| Live {
        bytes: c.controller.bytes + c.liveness.bytes,
        chunks: c.controller.chunks + c.liveness.chunks,
        blocks: c.controller.blocks + c.liveness.blocks,
    };
    slope("total", sum(&small), sum(&large), None);
}
