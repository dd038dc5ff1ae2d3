//! Algorithm 10 at scale: memory and per-call cost of the call-load table with 1,000,000
//! tracked calls (issue 7's scaling figures).
//!
//! ```sh
//! cargo run --release -p sipdisp-bench --example calls_1m [-- CALLS]
//! ```
//!
//! Builds a snapshot of one set of 4 destinations (`duid` each, no `maxload`) with
//! `ds_hash_size = 16` and the failover list on (algorithm 10 needs both), then selects with
//! algorithm 10 for `CALLS` distinct 46-byte Call-IDs (INVITE: each inserts its Call-ID and
//! counts a load), confirms every call (`ds_load_update` on the 2xx) and ends every call
//! (BYE). A counting allocator measures the live heap the table holds; VmRSS is read too.
//! The answers are checked: every selection must add a load, loads must be balanced, the
//! table must hold every call and be empty at the end.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

use sipdisp::dispatch::runtime::LoadEvent;
use sipdisp::dispatch::{
    Algorithm, DestIdx, DispatchParams, Key, LoadHooks, Mode, Pick, Request, SetId, Snapshot,
    parse_list,
};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to the system allocator with the caller's arguments; the
// counters are plain atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Relaxed);
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: forwarded contract.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Relaxed);
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as isize - l.size() as isize, Relaxed);
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: forwarded contract.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let calls: usize = std::env::args()
        .nth(1)
        .map_or(1_000_000, |a| a.parse().expect("CALLS: a number"));
    let params = DispatchParams {
        flags: 2,
        ds_hash_size: 16,
        ..Default::default()
    };
    let text = "1 sip:127.0.0.1:6000 0 0 duid=a\n1 sip:127.0.0.1:6001 0 0 duid=b\n\
                1 sip:127.0.0.1:6002 0 0 duid=c\n1 sip:127.0.0.1:6003 0 0 duid=d\n";
    let list = parse_list(
        "calls.list",
        text.as_bytes(),
        &params,
        &LoadHooks::default(),
    )
    .expect("list parses");
    let snap = Snapshot::build(&list.entries, params, 1);
    // 46-byte Call-IDs, like the INVITE fixture's, generated before measuring.
    let ids: Vec<u8> = (0..calls)
        .flat_map(|i| format!("{i:032x}@198.51.100.17").into_bytes())
        .collect();
    let id = |i: usize| &ids[i * 46..(i + 1) * 46];
    let mut out = [Pick {
        set: SetId(0),
        set_pos: 0,
        idx: DestIdx(0),
    }; 8];
    let now = Instant::now();
    let (live0, allocs0, rss0) = (LIVE.load(Relaxed), ALLOCS.load(Relaxed), rss_kb());

    let t = Instant::now();
    for i in 0..calls {
        let req = Request {
            set: SetId(1),
            alg: Algorithm::CallLoad,
            key: Key::CallLoad {
                call_id: id(i),
                invite: true,
            },
            limit: 1,
            mode: Mode::DstUri,
            dst_already_set: false,
            now,
        };
        let sel = snap.select(&req, &mut out).expect("selects");
        assert!(sel.load_added, "call {i} was not counted");
    }
    let insert = t.elapsed();
    let (live1, allocs1, rss1) = (LIVE.load(Relaxed), ALLOCS.load(Relaxed), rss_kb());
    let table = snap.calls().expect("ds_hash_size > 0 gives a table");
    assert_eq!(table.len(), calls);
    let loads: Vec<u32> = snap
        .set(SetId(1))
        .unwrap()
        .destinations()
        .iter()
        .map(|d| d.dload())
        .collect();
    assert_eq!(loads.iter().map(|&l| l as usize).sum::<usize>(), calls);
    assert!(
        loads.iter().max().unwrap() - loads.iter().min().unwrap() <= 1,
        "{loads:?}"
    );

    let t = Instant::now();
    for i in 0..calls {
        snap.load_update(id(i), LoadEvent::InviteConfirmed);
    }
    let confirm = t.elapsed();
    let t = Instant::now();
    for i in 0..calls {
        snap.load_update(id(i), LoadEvent::ByeOrCancel);
    }
    let bye = t.elapsed();
    assert!(table.is_empty());
    assert!(
        snap.set(SetId(1))
            .unwrap()
            .destinations()
            .iter()
            .all(|d| d.dload() == 0)
    );

    let per = |d: std::time::Duration| d.as_nanos() as f64 / calls as f64;
    println!(
        "alg 10, {calls} calls, 4 destinations, ds_hash_size 16\n\
         heap held by the table: {:.1} MiB = {:.0} bytes per call ({:.2} allocations per call)\n\
         VmRSS growth: {:.1} MiB = {:.0} bytes per call\n\
         select + insert: {:.0} ns per call (scans the set for the least load, inserts the Call-ID)\n\
         confirm (2xx):   {:.0} ns per call\n\
         end (BYE):       {:.0} ns per call",
        (live1 - live0) as f64 / 1048576.0,
        (live1 - live0) as f64 / calls as f64,
        (allocs1 - allocs0) as f64 / calls as f64,
        (rss1 - rss0) as f64 / 1024.0,
        (rss1 - rss0) as f64 * 1024.0 / calls as f64,
        per(insert),
        per(confirm),
        per(bye),
    );
}
