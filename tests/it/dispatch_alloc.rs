//! Selection and the failover list allocate nothing: a counting global allocator (this binary
//! only) counts allocations made by the current thread while selecting.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Instant;

use sipdisp::dispatch::{
    Algorithm, DestIdx, DispatchParams, Key, LoadHooks, Mode, Pick, Request, SetId, Snapshot,
    parse_list,
};

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
    /// Bytes allocated minus bytes freed by this thread.
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator unchanged; the counter is a plain thread-local
// `Cell` with a const initialiser, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        LIVE.with(|c| c.set(c.get() + l.size() as isize));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.with(|c| c.set(c.get() - l.size() as isize));
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        LIVE.with(|c| c.set(c.get() + n as isize - l.size() as isize));
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Bytes that `f` (on this thread) allocated and did not free, its result dropped first.
pub(crate) fn retained<R>(f: impl FnOnce() -> R) -> isize {
    let before = LIVE.with(Cell::get);
    drop(f());
    LIVE.with(Cell::get) - before
}

pub(crate) fn allocations<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = ALLOCS.with(Cell::get);
    let r = f();
    (r, ALLOCS.with(Cell::get) - before)
}

#[test]
fn selection_and_failover_list_allocate_nothing() {
    let params = DispatchParams {
        flags: 2,
        use_default: true,
        ..Default::default()
    };
    let mut text = String::new();
    for i in 0..50 {
        text += &format!(
            "1 sip:10.0.{}.{}:5060 0 {} weight=2;rweight={}\n",
            i / 250,
            i % 250,
            i % 3,
            1 + i % 4
        );
    }
    let l = parse_list(
        "alloc.list",
        text.as_bytes(),
        &params,
        &LoadHooks::default(),
    )
    .unwrap();
    let snap = Snapshot::build(&l.entries, params, 9);
    snap.set_state(
        SetId(1),
        sipdisp::dispatch::runtime::Target::Uri(b"sip:10.0.0.7:5060"),
        1,
    )
    .unwrap();
    let mut out = [Pick {
        set: SetId(0),
        set_pos: 0,
        idx: DestIdx(0),
    }; 64];
    let keys: [(Algorithm, Key<'_>); 11] = [
        (
            Algorithm::CallId,
            Key::CallId(b" a84b4c76e66710@pc33.atlanta.com "),
        ),
        (
            Algorithm::From,
            Key::Uri {
                user: Some(b"alice"),
                host: b"atlanta.com",
                port: Some((b"5070", 5070)),
                default_port: 5060,
            },
        ),
        (
            Algorithm::To,
            Key::Uri {
                user: None,
                host: b"[2001:db8::1]",
                port: None,
                default_port: 5061,
            },
        ),
        (
            Algorithm::RequestUri,
            Key::Uri {
                user: Some(b"bob"),
                host: b"h",
                port: Some((b"5060", 5060)),
                default_port: 5060,
            },
        ),
        (Algorithm::RoundRobin, Key::None),
        (Algorithm::AuthUser, Key::AuthUser(Some(b"sip:bob@x"))),
        (Algorithm::Random, Key::Random(123_456)),
        (Algorithm::Template, Key::Template(b"<null>")),
        (Algorithm::Weight, Key::None),
        (Algorithm::RelativeWeight, Key::None),
        (Algorithm::Latency, Key::None),
    ];
    for (alg, key) in keys {
        for limit in [0, 3] {
            let req = Request {
                set: SetId(1),
                alg,
                key,
                limit,
                mode: Mode::DstUri,
                dst_already_set: false,
                now: Instant::now(),
            };
            let (sel, n) = allocations(|| snap.select(&req, &mut out));
            let sel = sel.unwrap();
            assert!(sel.list_len > 0);
            assert_eq!(n, 0, "{alg:?} limit {limit} allocated {n} times");
        }
    }
    // Parallel branches too.
    let req = Request {
        set: SetId(1),
        alg: Algorithm::Parallel,
        key: Key::None,
        limit: 0,
        mode: Mode::DstUri,
        dst_already_set: false,
        now: Instant::now(),
    };
    let (sel, n) = allocations(|| snap.select(&req, &mut out));
    assert!(sel.unwrap().list_len > 0);
    assert_eq!(n, 0);
    // The counter works.
    let (_, n) = allocations(|| Box::new(1u8));
    assert_eq!(n, 1);
}
