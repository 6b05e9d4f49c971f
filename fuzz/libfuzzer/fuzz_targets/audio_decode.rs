#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| warble_fuzz::audio_decode(data));
