//! Any sequence of messages, answers, replays, clock jumps and reloads through the whole
//! proxy core: the promises of `tests/it/proxy_sequences.rs` (no panic, nothing sent anywhere
//! configuration does not allow, bounded transmits per message, nothing left in the
//! transaction table or the call loads once the timers have run).
#![no_main]

#[path = "../../it/proxy_sequences.rs"]
mod sequences;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sequences::run(data);
});
