//! Any bytes through the URI parser: no panic, and the parts are inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipdisp_parser::Uri;

fuzz_target!(|data: &[u8]| {
    if let Ok(u) = Uri::parse(data) {
        assert_eq!(u.raw, data);
        assert!(u.host_offset <= data.len());
        let _ = u.host_part();
        let _ = u.params().count();
        let _ = u.is_user_phone();
        let _ = u.transport();
    }
});
