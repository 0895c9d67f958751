//! What the history costs (issue #10), measured with a counting allocator:
//! the bytes of a held event (its shared frame and strings, counted once
//! for the node, and the pointers each reactor keeps), the bytes of an
//! indexed user, and the time of one replay next to a busy neighbour.
//!
//! Run: `cargo bench --bench history`. Prints a table; asserts nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use herald::hub::envelope::decode;
use herald::hub::history::{History, Limits, Subscriber};
use herald::hub::Event;

/// Counts the bytes live on the heap.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counter is only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Relaxed);
        // SAFETY: the caller's layout is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> isize {
    LIVE.load(Relaxed)
}

fn limits() -> Limits {
    Limits {
        cap: 100,
        ttl_ms: 600_000,
        max_bytes: usize::MAX,
    }
}

fn event(seq: u64, json: &str) -> Arc<Event> {
    let env = decode(json.as_bytes()).expect("envelope").remove(0);
    Arc::new(env.into_event(seq, format!("1733570000000-{seq}")))
}

/// Bytes of the events themselves, and what one reactor's history adds.
fn measure(name: &str, events: impl Fn(u64) -> String, n: u64) {
    let before = live();
    let evs: Vec<Arc<Event>> = (0..n).map(|i| event(i + 1, &events(i))).collect();
    let shared = live() - before;
    let before = live();
    let mut h = History::new(limits());
    for ev in &evs {
        h.push(ev, 0);
    }
    let index = live() - before;
    let held = h.held();
    println!(
        "{name:<34} {n:>9} events {:>8} users | shared {:>6.1} B/event (budget counts {:>6.1}) | \
         per reactor {:>5.1} B/event{}",
        held.users,
        shared as f64 / n as f64,
        held.bytes as f64 / n as f64,
        index as f64 / n as f64,
        if held.users > 0 {
            format!(", {:.1} B/indexed user", index as f64 / held.users as f64)
        } else {
            String::new()
        }
    );
    drop(h);
    drop(evs);
}

fn main() {
    println!("# history memory (counting allocator; one reactor's index; frames shared by all)");
    measure(
        "broadcasts of one app",
        |i| format!(r#"{{"app":"shop","event":"e","message":"m{i}"}}"#),
        1_000_000,
    );
    measure(
        "targeted, 1 event per user",
        |i| format!(r#"{{"to":"user-{i}","event":"e","message":"m{i}"}}"#),
        1_000_000,
    );
    measure(
        "targeted, 10 events per user",
        |i| format!(r#"{{"to":"user-{}","event":"e","message":"m{i}"}}"#, i / 10),
        1_000_000,
    );

    println!("# replay next to a busy neighbour (A missed 1 event, B got N)");
    for n in [1_000u64, 100_000, 1_000_000] {
        let mut h = History::new(limits());
        h.push(&event(1, r#"{"to":"a","message":"seen"}"#), 0);
        h.push(&event(2, r#"{"to":"a","message":"missed"}"#), 0);
        for i in 0..n {
            h.push(&event(i + 3, r#"{"to":"b","message":"busy"}"#), 0);
        }
        let who = Subscriber {
            app: "default",
            user: Some("a"),
            filter: None,
        };
        let rounds = 10_000;
        let t = Instant::now();
        for _ in 0..rounds {
            let r = h.replay(&who, "1733570000000-1");
            assert!(!r.gap && r.events.len() == 1);
            black_box(r);
        }
        let per = t.elapsed().as_nanos() as f64 / rounds as f64;
        println!("neighbour got {n:>9}: one replay {per:>8.0} ns");
    }
}
