//! The control plane's HTTP listener: `/metrics` (Prometheus), `/health`, `POST /RPC`
//! (JSON-RPC in Kamailio's shapes) — served on one control-plane thread, never on a worker.
//!
//! [`http`] serves them with hyper on the admin thread's own tokio runtime (bounded request
//! sizes and times, `Content-Length` bodies only, bearer-token check, one request per
//! connection, handlers on a blocking pool); the endpoints register as [`Route`]s. It binds 127.0.0.1 by default; a non-loopback bind
//! requires a token (enforced by the configuration).

pub mod http;
pub mod metrics;
pub mod rpc;

pub use http::{AdminServer, Request, Response, Route};

use std::sync::Arc;

use crate::control::Control;
use crate::health::Health;

/// Every admin endpoint: `/health`, `POST /RPC` (through the control plane's
/// [`Commands`](crate::control::Commands)) and `/metrics`.
pub fn routes(control: Arc<Control>, health: Arc<Health>) -> Vec<Route> {
    let metrics = metrics::route(control.shared_arc(), health);
    vec![
        Route {
            method: "GET",
            path: "/health",
            handler: Box::new(|_| Response::text(200, "ok\n")),
        },
        Route {
            method: "POST",
            path: "/RPC",
            handler: Box::new(move |r| rpc::handle(&*control, &r.body)),
        },
        metrics,
    ]
}
