//! sipdisp: a SIP load balancer that re-implements Kamailio's `dispatcher` module as a
//! standalone daemon.
//!
//! The crate is laid out along the one-way flow of a message (receive → scan → select →
//! rewrite → send). This library holds the stages that are not the SIP scanner itself (that is
//! the `sipdisp-parser` crate):
//!
//! * [`dispatch`]: destination sets, list-file loading, the selection algorithms 0–12, the
//!   destination state machine and latency statistics. It never sees SIP bytes or sockets: the
//!   caller hands it the key bytes an algorithm asks for and the current time.
//! * [`config`]: the TOML configuration file (Kamailio names for dispatcher parameters) with
//!   located errors, and the `check` report.
//! * [`cli`]: the command line (clap definitions and the `check` command).
//!
//! The proxy (sans-IO message path), the I/O backends and the admin plane are added by later
//! stages of the project; see `docs/architecture.md`.

pub mod admin;
pub mod cli;
pub mod config;
pub mod control;
pub mod ctl;
pub mod daemon;
pub mod dispatch;
pub mod health;
pub mod netio;
pub mod proxy;
