//! Any text as sipdisp.toml: a configuration or located errors (file:line:column, key, what
//! was expected), never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(errors) = sipdisp::config::Config::parse(text, std::path::Path::new("/etc/sipdisp/sipdisp.toml")) {
        let shown = errors.to_string();
        assert!(shown.contains("sipdisp.toml:"), "{shown}");
    }
});
