//! Socket setup shared by the socket backends, and conversions between `SocketAddr` and the
//! kernel's `sockaddr` bytes (safe code: the bytes are parsed, never cast).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::NetConfig;

/// Room for either `sockaddr_in` or `sockaddr_in6`.
pub(crate) const SOCKADDR_LEN: usize = std::mem::size_of::<libc::sockaddr_in6>();

/// Binds, for each address, the two sockets of its lanes ([`super::Lane`]): the normal lane
/// then the priority lane, both non-blocking with `SO_REUSEPORT` (several workers share a
/// port), `IPV6_V6ONLY` for IPv6 and the configured socket buffer sizes. The priority socket
/// is bound to the address the normal one got (the same ephemeral port for port 0). Returns the
/// sockets as `[normal, priority]` per address and the bound addresses.
pub(crate) fn bind_lanes(
    addrs: &[SocketAddr],
    cfg: &NetConfig,
) -> io::Result<(Vec<[Socket; 2]>, Vec<SocketAddr>)> {
    let mut socks = Vec::with_capacity(addrs.len());
    let mut bound = Vec::with_capacity(addrs.len());
    for addr in addrs {
        let at = |e: io::Error| io::Error::new(e.kind(), format!("binding UDP {addr}: {e}"));
        let normal = bind_one(*addr, cfg).map_err(at)?;
        let local = normal
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("bound address is not IP"))?;
        let priority = bind_one(local, cfg).map_err(at)?;
        bound.push(local);
        socks.push([normal, priority]);
    }
    Ok((socks, bound))
}

fn bind_one(addr: SocketAddr, cfg: &NetConfig) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_port(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    // Best effort: the kernel silently caps these at rmem_max / wmem_max.
    s.set_recv_buffer_size(cfg.socket_buffer)?;
    s.set_send_buffer_size(cfg.socket_buffer)?;
    s.set_nonblocking(true)?;
    s.bind(&SockAddr::from(addr))?;
    Ok(s)
}

/// `SO_ATTACH_REUSEPORT_CBPF` (asm-generic value: x86_64, aarch64, riscv64).
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;

// Classic BPF opcodes (linux/filter.h, linux/bpf_common.h).
const LD_W_ABS: u16 = 0x20;
const LD_B_ABS: u16 = 0x30;
const LD_MEM: u16 = 0x60;
const ST: u16 = 0x02;
const ALU_ADD_K: u16 = 0x04;
const ALU_MUL_K: u16 = 0x24;
const ALU_LSH_K: u16 = 0x64;
const ALU_RSH_K: u16 = 0x74;
const ALU_MOD_K: u16 = 0x94;
const ALU_XOR_X: u16 = 0xac;
const JMP_JA: u16 = 0x05;
const JMP_JEQ_K: u16 = 0x15;
const RET_A: u16 = 0x16;
const TAX: u16 = 0x07;
/// Loads relative to the network (IP) header (`SKF_NET_OFF`).
const NET: u32 = 0xfff0_0000;
/// `SKF_AD_OFF + SKF_AD_RANDOM`: a pseudo-random u32.
const AD_RANDOM: u32 = 0xffff_f000 + 56;

fn op(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The classic BPF program of [`steer`]: picks member `m` of `members` (by a hash of the
/// source address and ports, or at random), then returns socket `2m` of the group (`m`'s
/// normal lane) or `2m + 1` (its priority lane, when the payload starts with `prefix`).
///
/// The program runs with the packet's data at the UDP payload; the IP header is read through
/// `SKF_NET_OFF`. IPv4 is assumed to carry no options and IPv6 no extension headers: otherwise
/// a few other header bytes are hashed, still the same for every datagram of a flow. A payload
/// shorter than four bytes aborts the load, and the kernel then takes socket 0.
pub(crate) fn steer_program(
    spread: super::Spread,
    members: u32,
    prefix: Option<[u8; 4]>,
) -> Vec<libc::sock_filter> {
    let mut p = Vec::with_capacity(40);
    match spread {
        super::Spread::Random => p.push(op(LD_W_ABS, AD_RANDOM)),
        super::Spread::Flow => {
            // A = IP version (high nibble of byte 0).
            p.push(op(LD_B_ABS, NET));
            p.push(op(ALU_RSH_K, 4));
            // IPv6 → skip the 5 IPv4 instructions that follow the jump.
            p.push(jump(JMP_JEQ_K, 6, 5, 0));
            // IPv4: source address ^ (source port << 16 | destination port).
            p.push(op(LD_W_ABS, NET + 12));
            p.push(op(TAX, 0));
            p.push(op(LD_W_ABS, NET + 20));
            p.push(op(ALU_XOR_X, 0));
            p.push(jump(JMP_JA, 13, 0, 0));
            // IPv6: the four words of the source address ^ the ports.
            p.push(op(LD_W_ABS, NET + 8));
            for off in [12, 16, 20, 40] {
                p.push(op(TAX, 0));
                p.push(op(LD_W_ABS, NET + off));
                p.push(op(ALU_XOR_X, 0));
            }
            // Fibonacci hashing: the high bits of the product mix every input bit.
            p.push(op(ALU_MUL_K, 0x9e37_79b1));
            p.push(op(ALU_RSH_K, 16));
        }
    }
    p.push(op(ALU_MOD_K, members.max(1)));
    p.push(op(ALU_LSH_K, 1));
    if let Some(prefix) = prefix {
        p.push(op(ST, 0));
        p.push(op(LD_W_ABS, 0));
        p.push(jump(JMP_JEQ_K, u32::from_be_bytes(prefix), 0, 3));
        p.push(op(LD_MEM, 0));
        p.push(op(ALU_ADD_K, 1));
        p.push(op(RET_A, 0));
        p.push(op(LD_MEM, 0));
    }
    p.push(op(RET_A, 0));
    p
}

/// Attaches [`steer_program`] to the `SO_REUSEPORT` group of `sock`. The program belongs to
/// the group, so it is attached once, on any member, after every member is bound; the
/// members must have been bound in the order the program assumes (each datapath's normal then
/// priority socket, datapath after datapath) and none closed since.
pub(crate) fn steer(
    sock: &Socket,
    spread: super::Spread,
    members: u32,
    prefix: Option<[u8; 4]>,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut prog = steer_program(spread, members, prefix);
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: `fprog` points at `prog`, both alive on this stack frame for the duration of the
    // call; the kernel copies the program before returning; the length passed is `fprog`'s.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ATTACH_REUSEPORT_CBPF,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// [`steer`] on the group of each address of a datapath (`socks`: per address, its normal and
/// priority socket; the program is attached through the normal one).
pub(crate) fn steer_lanes(socks: &[[Socket; 2]], steering: &super::Steering) -> io::Result<()> {
    for [normal, _] in socks {
        steer(
            normal,
            steering.spread,
            steering.members as u32,
            steering.priority_prefix,
        )?;
    }
    Ok(())
}

/// `SO_MEMINFO` (asm-generic value), and the indexes of its `u32` array we read.
const SO_MEMINFO: libc::c_int = 55;
const SK_MEMINFO_RMEM_ALLOC: usize = 0;
const SK_MEMINFO_RCVBUF: usize = 1;
const SK_MEMINFO_VARS: usize = 9;

/// How full `sock`'s receive queue is, in percent of its receive buffer (the kernel's
/// `SO_MEMINFO`: bytes queued against `SO_RCVBUF`; the kernel drops datagrams at 100). One
/// `getsockopt`.
pub(crate) fn queue_fill_percent(sock: &Socket) -> io::Result<u32> {
    use std::os::fd::AsRawFd;
    let mut info = [0u32; SK_MEMINFO_VARS];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: `info` is a live, writable array of `len` bytes on this stack frame; the kernel
    // writes at most `len` bytes and updates `len`.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    let (queued, cap) = (info[SK_MEMINFO_RMEM_ALLOC], info[SK_MEMINFO_RCVBUF]);
    Ok((u64::from(queued) * 100 / u64::from(cap.max(1))).min(100) as u32)
}

/// Parses a `sockaddr_in` / `sockaddr_in6` as the kernel wrote it (native-endian family,
/// network-order port and address).
pub(crate) fn parse_sockaddr(b: &[u8]) -> Option<SocketAddr> {
    let family = i32::from(u16::from_ne_bytes(b.get(0..2)?.try_into().ok()?));
    let port = u16::from_be_bytes(b.get(2..4)?.try_into().ok()?);
    if family == libc::AF_INET {
        let ip: [u8; 4] = b.get(4..8)?.try_into().ok()?;
        Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)))
    } else if family == libc::AF_INET6 {
        let flow = u32::from_be_bytes(b.get(4..8)?.try_into().ok()?);
        let ip: [u8; 16] = b.get(8..24)?.try_into().ok()?;
        let scope = u32::from_ne_bytes(b.get(24..28)?.try_into().ok()?);
        Some(SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(ip),
            port,
            flow,
            scope,
        )))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_round_trip() {
        for s in ["127.0.0.1:5060", "[::1]:5061", "[fe80::1%2]:7", "0.0.0.0:0"] {
            let a: SocketAddr = s.parse().unwrap();
            let sa = SockAddr::from(a);
            // SAFETY: `as_ptr` points at `len()` initialised bytes of the storage owned by `sa`,
            // which lives until the end of this block.
            let bytes =
                unsafe { std::slice::from_raw_parts(sa.as_ptr().cast::<u8>(), sa.len() as usize) };
            assert_eq!(parse_sockaddr(bytes), Some(a), "{s}");
        }
        assert_eq!(parse_sockaddr(&[0; 28]), None);
        assert_eq!(parse_sockaddr(&[2, 0, 1]), None);
    }

    #[test]
    fn reuse_port_lets_two_sockets_share_a_port() {
        let cfg = NetConfig::default();
        let (_a, bound) = bind_lanes(&["127.0.0.1:0".parse().unwrap()], &cfg).unwrap();
        assert_ne!(bound[0].port(), 0);
        let (_b, bound2) = bind_lanes(&bound, &cfg).unwrap();
        assert_eq!(bound, bound2);
    }
}
