//! Any bytes as a dispatcher.list: a list or a typed error with its line, never a panic; a
//! list that parses builds a snapshot.
#![no_main]

use sipdisp::dispatch::{DispatchParams, LoadHooks, Snapshot, parse_list};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let params = DispatchParams {
        flags: 2,
        ds_hash_size: 2,
        ..DispatchParams::default()
    };
    match parse_list("fuzz.list", data, &params, &LoadHooks::default()) {
        Ok(loaded) => {
            let snap = Snapshot::build(&loaded.entries, params, 1);
            for set in snap.sets() {
                assert!(!set.destinations().is_empty());
            }
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
        }
    }
});
