//! sipdisp: a SIP load balancer that re-implements Kamailio's `dispatcher` module as a
//! standalone daemon.
//!
//! The crate is laid out along the one-way flow of a message (receive → scan → select →
//! rewrite → send). This library holds the stages that are not the SIP scanner itself (that is
//! the `sipdisp-parser` crate):
//!
//! * [`dispatch`]: destination sets, list-file loading, the selection algorithms 0–13, the
//!   destination state machine and latency statistics. It never sees SIP bytes or sockets: the
//!   caller hands it the key bytes an algorithm asks for and the current time.
//! * [`proxy`]: the message path without I/O — one datagram in, a verdict and transmits out.
//! * [`netio`]: batched UDP I/O (io_uring, recvmmsg/sendmmsg, in-memory); the only `unsafe`.
//! * [`health`]: keepalive probing, state changes, events and the event hook.
//! * [`admin`], [`control`]: the admin HTTP listener (`/metrics`, `/health`, `POST /RPC`) and
//!   what its JSON-RPC methods do (reload, add, remove, set_state); [`ctl`] is its client.
//! * [`config`]: the TOML configuration file (Kamailio names for dispatcher parameters) with
//!   located errors, and the `check` report; [`cli`]: the command line.
//! * [`plane`]: the published destination plane (snapshot + resolved addresses), plane
//!   building and carry-over, and the state workers, control and admin share.
//! * [`daemon`]: wiring — loads the plane, starts workers, the admin listener and probing.
//!
//! `docs/architecture.md` says how a message flows and where state lives.

// `unsafe` is fenced by the compiler: only the I/O layer may contain it (every block with a
// `// SAFETY:` comment, see `clippy::undocumented_unsafe_blocks` in Cargo.toml).
#![deny(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod config;
pub mod control;
pub mod ctl;
pub mod daemon;
pub mod dispatch;
pub mod health;
#[allow(unsafe_code)]
pub mod netio;
pub mod plane;
pub mod proxy;
pub mod source;
