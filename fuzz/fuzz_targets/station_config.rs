//! Any text given as a station file must give a config or a list of problems, never a
//! panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = warble_config::load_str(std::path::Path::new("fuzz/station.toml"), text);
    }
});
