//! Memory does not grow with capture length: the live engine (idle expiry, short linger,
//! incidents handed out and pruned) fed the #4500 lab capture over and over, each copy later in
//! time, for hours of capture time. Heap in use is counted by a wrapping global allocator.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use common::*;
use proxyscope::analyze::{Engine, Options};
use proxyscope::source::{CaptureFile, Frame, Linktype, Sources};
use proxyscope::time::Timestamp;

struct Counting;

static IN_USE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        IN_USE.fetch_add(l.size() as isize, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        IN_USE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        System.dealloc(p, l)
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

#[test]
fn live_engine_heap_is_flat_over_hours_of_capture() {
    let path = repo().join("captures/lab/dirty-ssl.pcap.gz");
    let mut frames: Vec<(Timestamp, Vec<u8>, u32, Linktype)> = Vec::new();
    let mut src = Sources::new(vec![CaptureFile::open(path.to_str().unwrap(), 0).unwrap()]);
    while let Some(f) = src.next_frame() {
        frames.push((f.ts, f.data.to_vec(), f.orig_len, f.linktype));
    }
    let first = frames[0].0 .0;
    let span = frames.last().unwrap().0 .0 - first + 5_000_000_000;
    let mut opts = Options {
        legs: find_legs(&[&path], &Options::default()),
        ..Options::default()
    };
    opts.tcp.linger = 2_000_000_000;
    opts.tcp.idle_timeout = Some(60_000_000_000);
    let mut engine = Engine::new(&opts);
    engine.report_as_finished();
    let mut rep = Collect::default();
    let mut heap = Vec::new();
    let mut incidents = 0;
    let mut n = 0;
    // 150 copies, 8.4 s apart: 21 minutes of capture time, past the 10-minute horizon of
    // incident building, 2700 connections.
    for round in 0..150i64 {
        for (ts, data, orig_len, linktype) in &frames {
            n += 1;
            let frame = Frame {
                ts: Timestamp(ts.0 + round * span),
                frame_no: n,
                file: 0,
                interface: 0,
                linktype: *linktype,
                data,
                orig_len: *orig_len,
            };
            engine.push(&frame, &mut rep).unwrap();
        }
        let now = Timestamp(frames.last().unwrap().0 .0 + round * span + 4_000_000_000);
        engine.tick(now, &mut rep).unwrap();
        incidents += engine.ready_incidents(now, 3_000_000_000).len();
        rep.0.clear();
        rep.0.shrink_to_fit();
        heap.push(IN_USE.load(Ordering::Relaxed));
    }
    assert_eq!(incidents, 150 * 4, "every copy's 4 incidents handed out");
    assert_eq!(engine.open_connections(), 0);
    // Request pairing keeps a bounded window: at most the requests of its horizon.
    let (reqs, waiting, _, lists, _) = engine.pairing_footprint();
    assert!(
        reqs < 10_000 && waiting == 0 && lists == 0,
        "{reqs} {waiting} {lists}"
    );
    // Request pairing keeps a bounded window: at most the requests of its horizon.
    let (reqs, waiting, _, lists, _) = engine.pairing_footprint();
    assert!(
        reqs < 10_000 && waiting == 0 && lists == 0,
        "{reqs} {waiting} {lists}"
    );
    let at = |r: usize| heap[r] / 1024;
    eprintln!(
        "heap KiB after copies 10, 50, 100, 149: {} {} {} {}",
        at(10),
        at(50),
        at(100),
        at(149)
    );
    // Past the horizon (72 copies) the heap stays where it was: over the last third of the run it
    // may take one step, a hash table doubling (hashbrown grows when a rehash finds it more than
    // half full, and when that rehash comes depends on the random hashing of the keys, so the step
    // lands in a different round from run to run), and otherwise stays flat.
    let steps: Vec<i64> = (101..150)
        .map(|r| heap[r] as i64 - heap[r - 1] as i64)
        .collect();
    let largest = steps.iter().copied().max().unwrap_or(0).max(0);
    let rest: i64 = steps.iter().sum::<i64>() - largest;
    assert!(
        rest <= 32 * 1024 && largest <= 256 * 1024,
        "heap grew from {} KiB to {} KiB (largest step {} KiB)",
        at(100),
        at(149),
        largest / 1024
    );
}
