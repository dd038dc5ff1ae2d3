//! The io_uring backend (in progress).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use super::{Backend, BatchStats, Datapath, Handler, NetConfig};

/// io_uring datapath over one worker's sockets.
pub struct UringDatapath {
    locals: Vec<SocketAddr>,
}

impl UringDatapath {
    /// Binds `addrs` (see [`super::open`]) and sets up the ring.
    pub fn open(addrs: &[SocketAddr], cfg: &NetConfig) -> io::Result<UringDatapath> {
        let _ = (addrs, cfg);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "io_uring backend not built yet",
        ))
    }
}

impl Datapath for UringDatapath {
    fn kind(&self) -> Backend {
        Backend::IoUring
    }

    fn local_addrs(&self) -> &[SocketAddr] {
        &self.locals
    }

    fn run_batch(
        &mut self,
        _timeout: Option<Duration>,
        _handler: &mut Handler<'_>,
    ) -> io::Result<BatchStats> {
        Ok(BatchStats::default())
    }
}
