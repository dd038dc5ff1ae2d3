//! The control plane's HTTP listener: `/metrics` (Prometheus), `/health`, `POST /RPC`
//! (JSON-RPC in Kamailio's shapes) — served on one control-plane thread, never on a worker.
//!
//! [`http`] is a deliberately small HTTP/1.1 server for this one job (bounded request sizes,
//! `Content-Length` bodies only, bearer-token check, one request per connection); the
//! endpoints register as [`Route`]s. It binds 127.0.0.1 by default; a non-loopback bind
//! requires a token (enforced by the configuration).

pub mod http;
pub mod metrics;
pub mod rpc;

pub use http::{AdminServer, Request, Response, Route};
