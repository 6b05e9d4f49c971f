//! Feeds arbitrary bytes to the bundle verifier: it must return, never panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warble_core::bundle::{Bundle, Limits, SecretKey, TrustedKeys};

fuzz_target!(|data: &[u8]| {
    let keys: TrustedKeys = [SecretKey::from_seed([42; 32], "fuzz").public().clone()]
        .into_iter()
        .collect();
    let _ = Bundle::from_bytes(data, &keys, &Limits::default());
});
