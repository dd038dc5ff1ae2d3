//! Socket setup shared by the socket backends, and conversions between `SocketAddr` and the
//! kernel's `sockaddr` bytes (safe code: the bytes are parsed, never cast).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::NetConfig;

/// Room for either `sockaddr_in` or `sockaddr_in6`.
pub(crate) const SOCKADDR_LEN: usize = std::mem::size_of::<libc::sockaddr_in6>();

/// Binds one non-blocking UDP socket to each address with `SO_REUSEPORT` (several workers share
/// a port), `IPV6_V6ONLY` for IPv6 and the configured socket buffer sizes.
pub(crate) fn bind_all(
    addrs: &[SocketAddr],
    cfg: &NetConfig,
) -> io::Result<(Vec<Socket>, Vec<SocketAddr>)> {
    let mut socks = Vec::with_capacity(addrs.len());
    let mut bound = Vec::with_capacity(addrs.len());
    for addr in addrs {
        let s = bind_one(*addr, cfg)
            .map_err(|e| io::Error::new(e.kind(), format!("binding UDP {addr}: {e}")))?;
        bound.push(
            s.local_addr()?
                .as_socket()
                .ok_or_else(|| io::Error::other("bound address is not IP"))?,
        );
        socks.push(s);
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

/// Makes the kernel hand each datagram arriving at `sock`'s `SO_REUSEPORT` group to a random
/// member of the first `members` (in the order they were bound) instead of the member its
/// 4-tuple hashes to: a classic BPF program `return random() % members`. One busy peer — a
/// single 4-tuple — is then spread over every worker. The program belongs to the group, so it
/// is attached once, on any member, after all of them are bound.
pub(crate) fn steer_random(sock: &Socket, members: u32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // BPF_LD | BPF_W | BPF_ABS, BPF_ALU | BPF_MOD | BPF_K, BPF_RET | BPF_A.
    const BPF_LD_W_ABS: u16 = 0x20;
    const BPF_ALU_MOD_K: u16 = 0x94;
    const BPF_RET_A: u16 = 0x16;
    const SKF_AD_RANDOM: u32 = 0xffff_f000 + 56; // SKF_AD_OFF + SKF_AD_RANDOM
    let mut prog = [
        libc::sock_filter {
            code: BPF_LD_W_ABS,
            jt: 0,
            jf: 0,
            k: SKF_AD_RANDOM,
        },
        libc::sock_filter {
            code: BPF_ALU_MOD_K,
            jt: 0,
            jf: 0,
            k: members.max(1),
        },
        libc::sock_filter {
            code: BPF_RET_A,
            jt: 0,
            jf: 0,
            k: 0,
        },
    ];
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
        let (_a, bound) = bind_all(&["127.0.0.1:0".parse().unwrap()], &cfg).unwrap();
        assert_ne!(bound[0].port(), 0);
        let (_b, bound2) = bind_all(&bound, &cfg).unwrap();
        assert_eq!(bound, bound2);
    }
}
