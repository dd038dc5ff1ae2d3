//! The one integration-test binary of sipdisp. Each module is one area; other modules (the
//! proxy, the binary over real sockets) are added here as they arrive.

mod abuse_e2e;
mod control_e2e;
mod daemon_e2e;
mod db_e2e;
mod diff_cases;
mod dispatch_alloc;
mod failover_diff;
mod failover_e2e;
mod golden;
mod health_e2e;
mod kamailio_diff;
mod netio_alloc;
mod prometheus;
mod proxy_alloc;
mod proxy_sequences;
mod support;
