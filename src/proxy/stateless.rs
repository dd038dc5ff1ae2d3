//! Stateless execution of a [`Decision`] (RFC 3261 §16.11): forward the request or relay the
//! response with its edits, write and send a stateless reply, or do nothing — and say what
//! happened as a [`Verdict`]. No state survives the call; a transaction-stateful executor
//! would run the same decisions through transactions instead.

use arrayvec::ArrayVec;
use sipdisp_parser::{MAX_PIECES, Message, Plan};

use super::boundary::Sink;
use super::decide::{Decision, Forward, Hop, Reply};
use super::edits;
use super::reply;
use super::verdict::{DropReason, Verdict};
use crate::netio::Flow;

/// Runs `decision` for `msg`; `reply_buf` is the worker's reply buffer.
pub(crate) fn execute(
    decision: &Decision<'_>,
    msg: &Message<'_>,
    reply_buf: &mut [u8],
    sink: &mut impl Sink,
) -> Verdict {
    match decision {
        Decision::Forward(f) => forward(f, msg, sink),
        Decision::Reply(r) => send_reply(r, msg, reply_buf, sink),
        Decision::Relay(flow) => match edits::response(msg) {
            Ok(plan) => send_plan(&plan, flow, sink).map_or_else(failed, |()| Verdict::Relayed),
            Err(_) => Verdict::Dropped(DropReason::Rewrite),
        },
        // The call is over (or this worker has no table). RFC 3261 §16.7 would relay it
        // statelessly by its Via, but a transaction branch carries no MAC for that Via: drop.
        Decision::TxnResponse { .. } => Verdict::Dropped(DropReason::StaleTransaction),
        Decision::Absorb => Verdict::Absorbed,
        Decision::ForUs => Verdict::ForUs,
        Decision::ProbeReply { token, code } => Verdict::ProbeReply {
            token: *token,
            code: *code,
        },
        Decision::Drop(why) => Verdict::Dropped(*why),
    }
}

fn forward(f: &Forward<'_>, msg: &Message<'_>, sink: &mut impl Sink) -> Verdict {
    let Ok(plan) = edits::request(msg, &f.edits) else {
        return Verdict::Dropped(DropReason::Rewrite);
    };
    match send_plan(&plan, &f.flow, sink) {
        Ok(()) => match f.hop {
            Hop::Dispatched { pick, .. } => Verdict::Forwarded(pick),
            Hop::Routed => Verdict::Routed,
        },
        Err(e) => failed(e),
    }
}

fn send_reply(r: &Reply<'_>, msg: &Message<'_>, buf: &mut [u8], sink: &mut impl Sink) -> Verdict {
    let mut line = ArrayVec::<u8, 512>::new();
    let extra: &[&[u8]] = match (r.unsupported, r.retry_after) {
        (Some(v), _) => {
            let _ = line.try_extend_from_slice(b"Unsupported: ");
            let _ = line.try_extend_from_slice(&v[..v.len().min(480)]);
            let _ = line.try_extend_from_slice(b"\r\n");
            &[&line]
        }
        (None, Some(secs)) => {
            use std::io::Write;
            let _ = write!(&mut line, "Retry-After: {secs}\r\n");
            &[&line]
        }
        (None, None) => &[],
    };
    let Some(n) = reply::build(msg, r.code, r.reason, extra, buf) else {
        return Verdict::Dropped(DropReason::Unanswerable);
    };
    match sink.send(&r.flow, &[&buf[..n]]) {
        Ok(()) => Verdict::Replied(r.code),
        Err(e) => failed(e),
    }
}

fn failed(e: crate::netio::OutboxError) -> Verdict {
    Verdict::Dropped(DropReason::SendFailed(e))
}

fn send_plan(
    plan: &Plan<'_, '_>,
    flow: &Flow,
    sink: &mut impl Sink,
) -> Result<(), crate::netio::OutboxError> {
    let mut pieces = ArrayVec::<&[u8], MAX_PIECES>::new();
    plan.for_each_slice(|s| pieces.push(s));
    sink.send(flow, &pieces)
}
