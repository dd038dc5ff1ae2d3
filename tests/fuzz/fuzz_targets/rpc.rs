//! Any bytes as a `POST /RPC` body against a real control plane (list file, add, remove,
//! reload, set_state, hash, …): a JSON-RPC answer with a fault or a result, never a panic; the
//! plane stays consistent (every set it publishes has a destination).
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sipdisp::admin::rpc;
use sipdisp::control::Control;
use sipdisp::dispatch::{DispatchParams, LoadHooks, Snapshot, parse_list};
use sipdisp::netio::Backend;
use sipdisp::plane::{Plane, Shared};
use sipdisp::proxy::literal_addr;
use sipdisp::source::Source;

const LIST: &str = "1 sip:127.0.0.1:5070 0 0 duid=a;weight=50\n1 sip:127.0.0.1:5071 8 1\n\
                    2 sip:127.0.0.1:5072 0 0 maxload=4\n";

/// The list file, written once per fuzzing process.
fn list_file() -> &'static std::path::Path {
    static PATH: OnceLock<std::path::PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let p = std::env::temp_dir().join(format!("sipdisp-fuzz-rpc-{}.list", std::process::id()));
        std::fs::write(&p, LIST).expect("temporary list file");
        p
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let params = DispatchParams {
        flags: 2,
        ds_hash_size: 2,
        reload_delta: Duration::ZERO,
        ..DispatchParams::default()
    };
    let loaded = parse_list("fuzz.list", LIST.as_bytes(), &params, &LoadHooks::default()).unwrap();
    let plane = Plane::new(Snapshot::build(&loaded.entries, params.clone(), 1), literal_addr);
    let shared = Arc::new(Shared::new(plane, 1, Backend::Memory));
    let control = Control::new(Arc::clone(&shared), Source::File(list_file().into()), params, false);
    let r = rpc::handle(&control, data);
    assert!(matches!(r.status, 200 | 400 | 500), "status {}", r.status);
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("the answer is JSON");
    assert_eq!(v["jsonrpc"], "2.0");
    assert!(v.get("result").is_some() != v.get("error").is_some(), "{v}");
    for set in shared.plane.load().snapshot.sets() {
        assert!(!set.destinations().is_empty());
    }
});
