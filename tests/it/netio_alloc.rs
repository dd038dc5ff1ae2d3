//! `run_batch` allocates nothing per datagram in steady state, for the io_uring and mmsg
//! backends: the counting allocator of `dispatch_alloc` (this binary's global allocator) counts
//! the allocations of the current thread while batches receive, handle and echo real loopback
//! traffic. Sending from the client happens outside the counted region.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use sipdisp::netio::{self, Backend, BatchStats, Datagram, NetConfig, Outbox};

use crate::dispatch_alloc::allocations;

/// Sends `n` datagrams, then runs batches (counted) until all were echoed; returns the
/// allocation count and the summed stats.
fn round(dp: &mut dyn netio::Datapath, c: &UdpSocket, n: usize) -> (usize, BatchStats) {
    let to = dp.local_addrs()[0];
    for i in 0..n {
        c.send_to(format!("INVITE {i} SIP/2.0\r\n\r\n").as_bytes(), to)
            .unwrap();
    }
    let mut handler = netio::handler_fn(
        |_, d: &Datagram<'_>, ob: &mut Outbox<'_>| {
            let _ = ob.push(
                d.local,
                d.peer,
                &[b"Via: x\r\n", &d.data[..6], &d.data[6..]],
            );
        },
        |_, _| {},
    );
    let end = Instant::now() + Duration::from_secs(5);
    let (total, allocs) = allocations(|| {
        let mut total = BatchStats::default();
        while (total.received as usize) < n && Instant::now() < end {
            let s = dp
                .run_batch(Some(Duration::from_millis(20)), &mut handler)
                .unwrap();
            total.add(&s);
        }
        total
    });
    let mut buf = [0u8; 256];
    for _ in 0..n {
        c.recv_from(&mut buf).unwrap();
    }
    (allocs, total)
}

#[test]
fn run_batch_allocates_nothing_per_datagram() {
    let mut backends = vec![Backend::Mmsg];
    match netio::io_uring_unavailable() {
        None => backends.push(Backend::IoUring),
        Some(why) => println!("netio_alloc: io_uring skipped: {why}"),
    }
    let cfg = NetConfig {
        recv_buffers: 32,
        batch: 32,
        ..NetConfig::default()
    };
    for b in backends {
        let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut dp = netio::open(b, &[lo], &cfg).unwrap();
        let c = UdpSocket::bind(lo).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        // Warm up: first use of thread-locals, lazily sized structures, the probe.
        round(&mut *dp, &c, 50);
        for _ in 0..3 {
            let (allocs, s) = round(&mut *dp, &c, 200);
            assert_eq!((s.received, s.sent, s.send_errors), (200, 200, 0), "{b}");
            assert!(
                s.referenced_bytes > 0 && s.copied_bytes == 8 * 200,
                "{b}: {s:?}"
            );
            assert_eq!(allocs, 0, "{b}: allocations while handling 200 datagrams");
        }
    }
}
