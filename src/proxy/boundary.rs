//! The proxy core's boundary with the I/O layer: what comes in ([`Inbound`]) and where
//! transmits go ([`Sink`]). Both are transport-neutral: a message arrives on, and leaves on, a
//! [`Flow`].

use crate::netio::{Flow, OutboxError};

/// One message as the I/O layer received it.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    /// The message (one UDP datagram).
    pub data: &'a [u8],
    /// The flow it came over: transport, our socket (index into [`ProxyConfig::sockets`]),
    /// the sender.
    pub flow: Flow,
}

/// Where transmits go (the I/O layer's outbox; a collector in tests).
pub trait Sink {
    /// Queues one message made of `pieces` on `flow`; says why when it could not be queued.
    fn send(&mut self, flow: &Flow, pieces: &[&[u8]]) -> Result<(), OutboxError>;
}
