#![no_main]
libfuzzer_sys::fuzz_target!(
    // libfuzzer-sys aborts on any panic; the default hook lets a panic that Warble itself
    // catches (a decoder's, turned into an error) unwind, and still reports the others.
    init: {
        let _ = std::panic::take_hook();
    },
    |data: &[u8]| warble_fuzz::station_config(data)
);
