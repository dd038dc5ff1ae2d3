//! `forward`: the raw UDP forwarder, the floor any proxy pays on this kernel.
//!
//! No SIP parsing. Two sockets: the client side bound to `--listen`, the backend side on an
//! ephemeral loopback port. Every datagram from a client is relayed unchanged to `--to` from
//! the backend socket; every datagram arriving on the backend socket is relayed to the
//! client, which is the source of the most recent client datagram (one client at a time —
//! enough for a generator with one socket; a real NAT would keep a table). The responder
//! finds its way back here because the generator's Via carries a bare `rport` (RFC 3581:
//! respond to the source address). Each direction is one `recvmmsg` and one `sendmmsg` of
//! up to 64 datagrams, the received buffers sent as they are. Stops after `--seconds` or on
//! SIGTERM/SIGINT and prints the counts.

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use crate::args::Args;
use crate::udp::{self, Batch};

pub fn run(a: &Args) -> Result<(), String> {
    let listen = udp::loopback(a.get("--listen")?.ok_or("--listen is required")?)?;
    let to = udp::loopback(a.get("--to")?.ok_or("--to is required")?)?;
    let seconds: f64 = a.get("--seconds")?.unwrap_or(60.0);
    if !(0.0..=3600.0).contains(&seconds) {
        return Err("--seconds must be in [0, 3600]".into());
    }
    let front = udp::socket(listen, 8 << 20)?;
    let back = udp::socket(SocketAddrV4::new(*listen.ip(), 0), 8 << 20)?;
    udp::catch_stop();
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut b = Batch::new(64);
    let mut client: Option<SocketAddrV4> = None;
    let (mut up, mut down, mut dropped) = (0u64, 0u64, 0u64);
    while Instant::now() < end && !udp::stopped() {
        let ready = udp::wait(&[&front, &back], Duration::from_millis(50));
        if ready & 1 != 0 {
            loop {
                let n = b.recv(&front).map_err(|e| format!("recv: {e}"))?;
                if n > 0 {
                    client = Some(b.addr(n - 1));
                }
                for i in 0..n {
                    b.set_addr(i, to);
                }
                let k = b.send(&back).map_err(|e| format!("send: {e}"))?;
                up += k as u64;
                dropped += (n - k) as u64;
                if n < b.capacity() {
                    break;
                }
            }
        }
        if ready & 2 != 0 {
            loop {
                let n = b.recv(&back).map_err(|e| format!("recv: {e}"))?;
                let Some(c) = client else {
                    dropped += n as u64;
                    break;
                };
                for i in 0..n {
                    b.set_addr(i, c);
                }
                let k = b.send(&front).map_err(|e| format!("send: {e}"))?;
                down += k as u64;
                dropped += (n - k) as u64;
                if n < b.capacity() {
                    break;
                }
            }
        }
    }
    println!("forwarded requests {up} responses {down} dropped {dropped}");
    Ok(())
}
