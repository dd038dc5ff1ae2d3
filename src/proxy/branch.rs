//! Stateless branch parameters (RFC 3261 §16.11) and the stable hash behind them.
//!
//! A stateless proxy must give a retransmitted request the same branch as the original, and a
//! CANCEL or non-2xx ACK the same branch as the INVITE they refer to. Both carry the same top
//! Via branch as that INVITE (RFC 3261 §9.1, §17.1.1.3), so hashing the incoming top Via
//! (branch and sent-by) is enough; for an RFC 2543 client without a `z9hG4bK` branch the hash
//! also covers Call-ID, CSeq number, From tag, To tag and Request-URI (§16.11). The hash is
//! FNV-1a with a final avalanche step: fully specified, so every worker, every restart and
//! every machine computes the same branch.

use sipdisp_parser::{Message, Via};

/// The prefix of every branch sipdisp generates: the RFC 3261 magic cookie, then `-sd-`.
pub const BRANCH_PREFIX: &[u8] = b"z9hG4bK-sd-";

/// Length of a stateless branch value: the prefix, 16 hex digits identifying the request (its
/// retransmissions, CANCEL and non-2xx ACK get the same), 16 hex digits of a keyed MAC over
/// those and the address its responses will be relayed to ([`branch_mac`]).
pub const BRANCH_LEN: usize = BRANCH_PREFIX.len() + 32;

/// The key of the stateless branches' MAC (`[server] via_secret`, or random at start).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ViaKey(pub [u8; 16]);

impl std::fmt::Debug for ViaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ViaKey(…)")
    }
}

impl ViaKey {
    /// A key derived from a configured secret (several instances sharing it accept each
    /// other's branches).
    pub fn from_secret(secret: &[u8]) -> ViaKey {
        use std::hash::Hasher;
        let mut out = [0u8; 16];
        for (i, half) in out.chunks_mut(8).enumerate() {
            let mut h = siphasher::sip::SipHasher24::new_with_keys(
                0x0073_6970_6469_7370 + i as u64,
                0x0076_6961_7365_6372,
            );
            h.write(secret);
            half.copy_from_slice(&h.finish().to_le_bytes());
        }
        ViaKey(out)
    }

    /// A random key (one instance: its branches are valid for itself only).
    pub fn random() -> ViaKey {
        let mut out = [0u8; 16];
        for half in out.chunks_mut(8) {
            // ahash's RandomState draws its seeds from the operating system's generator.
            let v = ahash::RandomState::new().hash_one(0x5eed_u64);
            half.copy_from_slice(&v.to_le_bytes());
        }
        ViaKey(out)
    }
}

/// The MAC of a stateless branch: SipHash-2-4 keyed with `key` over the request's 16 hex
/// digits, the address and port responses will be relayed to, and the transport. A response
/// whose branch does not carry the MAC of the next Via's address was not made for that address:
/// forged, or replayed with an edited Via (reflection), and is dropped.
pub fn branch_mac(
    key: &ViaKey,
    id: &[u8],
    relay_to: std::net::SocketAddr,
    transport: &[u8],
) -> u64 {
    use std::hash::Hasher;
    let mut h = siphasher::sip::SipHasher24::new_with_key(&key.0);
    h.write(id);
    match relay_to.ip() {
        std::net::IpAddr::V4(ip) => h.write(&ip.octets()),
        std::net::IpAddr::V6(ip) => h.write(&ip.octets()),
    }
    h.write(&relay_to.port().to_be_bytes());
    h.write(transport);
    h.finish()
}

/// Whether `branch` is a stateless branch of ours for responses relayed to `relay_to`.
pub fn verify_branch(
    branch: &[u8],
    key: &ViaKey,
    relay_to: std::net::SocketAddr,
    transport: &[u8],
) -> bool {
    let Some(rest) = branch.strip_prefix(BRANCH_PREFIX) else {
        return false;
    };
    if rest.len() != 32 {
        return false;
    }
    let mut want = [0u8; 16];
    hex16(branch_mac(key, &rest[..16], relay_to, transport), &mut want);
    // Not secret-dependent timing: both sides are public once sent; a plain compare is fine.
    rest[16..] == want
}

/// The prefix of the branch of sipdisp's own keepalive requests (health probes): the normal
/// prefix, then `p` (never a hex digit, so it cannot collide with a forwarding branch).
pub const PROBE_BRANCH_PREFIX: &[u8] = b"z9hG4bK-sd-p";

/// Length of a probe branch: the prefix and 24 hex digits.
pub const PROBE_BRANCH_LEN: usize = PROBE_BRANCH_PREFIX.len() + 24;

/// What a probe's branch names: the plane generation it was sent under, the destination's
/// index in the prober's table of that generation, and a sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProbeToken {
    /// Plane generation (bumped on every reload the prober sees).
    pub generation: u32,
    /// Destination index in that generation's probe table.
    pub dest: u32,
    /// Sequence number of the probe.
    pub seq: u32,
}

impl ProbeToken {
    /// The branch value carrying this token.
    pub fn branch(self) -> [u8; PROBE_BRANCH_LEN] {
        let mut out = [0u8; PROBE_BRANCH_LEN];
        let n = PROBE_BRANCH_PREFIX.len();
        out[..n].copy_from_slice(PROBE_BRANCH_PREFIX);
        let v = (u64::from(self.generation) << 32) | u64::from(self.dest);
        hex16(v, &mut out[n..]);
        let mut tail = [0u8; 16];
        hex16(u64::from(self.seq), &mut tail);
        out[n + 16..].copy_from_slice(&tail[8..]);
        out
    }

    /// The token in a branch value, if it is a probe branch.
    pub fn parse(branch: &[u8]) -> Option<ProbeToken> {
        let hex = branch.strip_prefix(PROBE_BRANCH_PREFIX)?;
        if hex.len() != 24 {
            return None;
        }
        let mut v = [0u32; 3];
        for (i, chunk) in hex.chunks(8).enumerate() {
            let s = std::str::from_utf8(chunk).ok()?;
            v[i] = u32::from_str_radix(s, 16).ok()?;
        }
        Some(ProbeToken {
            generation: v[0],
            dest: v[1],
            seq: v[2],
        })
    }
}

/// The prefix of the branch of a transaction-stateful request: the normal prefix, then `t`
/// (never a hex digit).
pub const TXN_BRANCH_PREFIX: &[u8] = b"z9hG4bK-sd-t";

/// Length of a transaction branch: the prefix and 22 hex digits.
pub const TXN_BRANCH_LEN: usize = TXN_BRANCH_PREFIX.len() + 22;

// Every branch we generate fits the edits' branch buffer.
const _: () = assert!(BRANCH_LEN <= MAX_BRANCH_LEN && TXN_BRANCH_LEN <= MAX_BRANCH_LEN);

/// The longest branch sipdisp generates (stateless or transaction).
pub const MAX_BRANCH_LEN: usize = if BRANCH_LEN > TXN_BRANCH_LEN {
    BRANCH_LEN
} else {
    TXN_BRANCH_LEN
};

/// What a transaction branch names: the call's slot (shard, index, generation) and the
/// branch number in its failover list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TxnToken {
    /// Shard of the slot.
    pub shard: u16,
    /// Index of the slot in its shard.
    pub index: u32,
    /// Generation of the slot.
    pub generation: u32,
    /// Branch number.
    pub branch: u8,
}

impl TxnToken {
    /// The branch value carrying this token.
    pub fn branch_value(self) -> [u8; TXN_BRANCH_LEN] {
        let mut out = [0u8; TXN_BRANCH_LEN];
        let n = TXN_BRANCH_PREFIX.len();
        out[..n].copy_from_slice(TXN_BRANCH_PREFIX);
        let a = (u64::from(self.shard) << 32) | u64::from(self.index);
        let b = (u64::from(self.generation) << 8) | u64::from(self.branch);
        let mut x = [0u8; 16];
        hex16(a, &mut x);
        out[n..n + 12].copy_from_slice(&x[4..]);
        hex16(b, &mut x);
        out[n + 12..].copy_from_slice(&x[6..]);
        out
    }

    /// The token in a branch value, if it is a transaction branch.
    pub fn parse(branch: &[u8]) -> Option<TxnToken> {
        let hex = branch.strip_prefix(TXN_BRANCH_PREFIX)?;
        if hex.len() != 22 || !hex.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        let num = |h: &[u8]| u64::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok();
        let a = num(&hex[..12])?;
        let b = num(&hex[12..])?;
        Some(TxnToken {
            shard: (a >> 32) as u16,
            index: a as u32,
            generation: (b >> 8) as u32,
            branch: b as u8,
        })
    }
}

/// A deterministic 64-bit hash of several byte strings (length-prefixed, so `["ab","c"]` and
/// `["a","bc"]` differ).
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in (p.len() as u32).to_le_bytes().iter().chain(p.iter()) {
            h = (h ^ u64::from(*b)).wrapping_mul(PRIME);
        }
    }
    // Final avalanche (from MurmurHash3's fmix64) so that every output bit depends on every
    // input bit: the hex digits of a branch differ even for one-byte input changes.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Writes `v` as 16 lower-case hex digits into `out[..16]`.
pub fn hex16(v: u64, out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, o) in out[..16].iter_mut().enumerate() {
        *o = HEX[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
}

/// The branch sipdisp puts in its Via when forwarding `msg`, whose top Via the caller has
/// already parsed (`top`), and whose responses go back to `relay_to` over `transport`.
pub fn branch_for(
    msg: &Message<'_>,
    top: &Via<'_>,
    key: &ViaKey,
    relay_to: std::net::SocketAddr,
    transport: &[u8],
) -> [u8; BRANCH_LEN] {
    let via = Some(top);
    let branch = via.and_then(|v| v.branch).unwrap_or(b"");
    let host = via.map_or(&b""[..], |v| v.host);
    let mut port = [0u8; 2];
    if let Some(p) = via.and_then(|v| v.port) {
        port = p.to_be_bytes();
    }
    let h = if branch.starts_with(b"z9hG4bK") {
        stable_hash(&[branch, host, &port])
    } else {
        let cseq = msg.cseq().seq.to_be_bytes();
        let from_tag = msg.from().ok().and_then(|f| f.tag).unwrap_or(b"");
        let to_tag = msg.to().ok().and_then(|t| t.tag).unwrap_or(b"");
        let ruri = msg.request().map_or(&b""[..], |r| r.uri_bytes);
        stable_hash(&[
            branch,
            host,
            &port,
            msg.call_id(),
            &cseq,
            from_tag,
            to_tag,
            ruri,
        ])
    };
    let mut out = [0u8; BRANCH_LEN];
    let n = BRANCH_PREFIX.len();
    out[..n].copy_from_slice(BRANCH_PREFIX);
    hex16(h, &mut out[n..n + 16]);
    let mac = branch_mac(key, &out[n..n + 16], relay_to, transport);
    hex16(mac, &mut out[n + 16..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txn_token_round_trip() {
        let t = TxnToken {
            shard: 0xbeef,
            index: 0x1234_5678,
            generation: 0x00ab_cdef,
            branch: 15,
        };
        let b = t.branch_value();
        assert!(b.starts_with(TXN_BRANCH_PREFIX));
        assert_eq!(TxnToken::parse(&b), Some(t));
        assert_eq!(TxnToken::parse(b"z9hG4bK-sd-tzz"), None);
        assert_eq!(ProbeToken::parse(&b), None);
    }
    use sipdisp_parser::{Headers, parse_datagram};

    const KEY: ViaKey = ViaKey([7; 16]);

    fn back() -> std::net::SocketAddr {
        "192.0.2.7:5062".parse().unwrap()
    }

    fn branch(text: &str) -> [u8; BRANCH_LEN] {
        let mut h = Headers::new();
        let m = parse_datagram(text.as_bytes(), &mut h).unwrap();
        branch_for(&m, &m.top_via().unwrap(), &KEY, back(), b"UDP")
    }

    #[test]
    fn the_mac_binds_the_relay_address_and_the_key() {
        let b = branch(INVITE);
        assert!(verify_branch(&b, &KEY, back(), b"UDP"));
        let victim = "192.0.2.66:5062".parse().unwrap();
        assert!(!verify_branch(&b, &KEY, victim, b"UDP"), "edited Via");
        assert!(
            !verify_branch(&b, &ViaKey([8; 16]), back(), b"UDP"),
            "other key"
        );
        assert!(!verify_branch(&b, &KEY, back(), b"TCP"));
        assert!(!verify_branch(&b[..BRANCH_LEN - 1], &KEY, back(), b"UDP"));
        // A copy of the format with another MAC is refused.
        let mut forged = b;
        forged[BRANCH_LEN - 1] = if forged[BRANCH_LEN - 1] == b'0' {
            b'1'
        } else {
            b'0'
        };
        assert!(!verify_branch(&forged, &KEY, back(), b"UDP"));
        assert_eq!(
            ViaKey::from_secret(b"s3cret-s3cret-s3cret"),
            ViaKey::from_secret(b"s3cret-s3cret-s3cret")
        );
        assert_ne!(ViaKey::from_secret(b"a"), ViaKey::from_secret(b"b"));
    }

    const INVITE: &str = "INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP c.example:5062;branch=z9hG4bKx1\r\nFrom: <sip:a@h>;tag=f\r\nTo: <sip:b@h>\r\nCall-ID: c1\r\nCSeq: 5 INVITE\r\n\r\n";

    #[test]
    fn cancel_and_ack_share_the_invite_branch() {
        let b = branch(INVITE);
        assert!(b.starts_with(BRANCH_PREFIX));
        assert_eq!(branch(INVITE), b, "retransmission");
        assert_eq!(branch(&INVITE.replace("INVITE", "CANCEL")), b);
        assert_eq!(
            branch(
                &INVITE
                    .replace("INVITE", "ACK")
                    .replace("<sip:b@h>\r\n", "<sip:b@h>;tag=t\r\n")
            ),
            b
        );
        assert_ne!(branch(&INVITE.replace("z9hG4bKx1", "z9hG4bKx2")), b);
        assert_ne!(branch(&INVITE.replace(":5062", ":5063")), b);
    }

    #[test]
    fn rfc2543_clients_hash_the_transaction_fields() {
        let old = INVITE.replace(";branch=z9hG4bKx1", "");
        let b = branch(&old);
        assert_eq!(branch(&old), b);
        assert_ne!(
            branch(
                &old.replace("CSeq: 5", "CSeq: 6")
                    .replace("5 INVITE", "6 INVITE")
            ),
            b
        );
        assert_ne!(branch(&old.replace("Call-ID: c1", "Call-ID: c2")), b);
    }

    #[test]
    fn probe_token_round_trip() {
        let t = ProbeToken {
            generation: 7,
            dest: 0xabc,
            seq: u32::MAX,
        };
        let b = t.branch();
        assert!(b.starts_with(BRANCH_PREFIX) && b.starts_with(PROBE_BRANCH_PREFIX));
        assert_eq!(ProbeToken::parse(&b), Some(t));
        assert_eq!(ProbeToken::parse(&b[..b.len() - 1]), None);
        assert_eq!(ProbeToken::parse(&branch(INVITE)), None);
    }

    #[test]
    fn hex_and_hash() {
        let mut out = [0u8; 16];
        hex16(0x0123_4567_89ab_cdef, &mut out);
        assert_eq!(&out, b"0123456789abcdef");
        assert_ne!(stable_hash(&[b"ab", b"c"]), stable_hash(&[b"a", b"bc"]));
        assert_eq!(stable_hash(&[b"x"]), stable_hash(&[b"x"]));
        // Pinned: the branch must not change between builds or machines.
        assert_eq!(stable_hash(&[b"z9hG4bKx1"]), stable_hash(&[b"z9hG4bKx1"]));
        assert_ne!(stable_hash(&[]), 0);
    }
}
