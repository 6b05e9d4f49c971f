//! Fuzz targets: one function per kind of input a station or collector takes from
//! outside, each asserting what must hold for *any* bytes (no panic, bounded work, and
//! the target's own properties). libFuzzer calls them from `fuzz/libfuzzer`
//! (`scripts/fuzz SECONDS`); `tests/replay.rs` calls them on stable Rust for every
//! hand-made seed (`fuzz/seeds/<target>/`), every input of the committed corpus
//! (`fuzz/corpus/<target>/`) and every crash ever found (`fuzz/crashes/<target>/`), so a
//! fixed crash stays fixed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a fuzz target's failed assertion is its finding"
)]

use std::path::Path;
use std::sync::{Mutex, OnceLock};

use warble_core::audio::AudioReader;
use warble_core::bundle::{Bundle, BundleManifest, Limits, PublicKey, TrustedKeys};
use warble_core::frontend::{FrontEndConfig, StreamingFrontEnd, WindowInfo, WindowSpec};

/// A target: its name (the corpus folder) and its body.
pub type Target = (&'static str, fn(&[u8]));

/// Every target.
pub const TARGETS: &[Target] = &[
    ("audio_decode", audio_decode),
    ("frontend_stream", frontend_stream),
    ("bundle", bundle),
    ("station_config", station_config),
    ("replay_request", replay_request),
    ("collector_message", collector_message),
];

/// Most samples one input may decode to: a header can claim hours of audio; the work
/// per input stays bounded (the decoder's own bounds are what is tested).
const MAX_DECODED: usize = 2_000_000;

/// Any bytes as an audio file: probed and decoded without panicking; what decodes is
/// finite.
pub fn audio_decode(data: &[u8]) {
    let Ok(mut reader) = AudioReader::from_bytes("input", data.to_vec()) else {
        return;
    };
    let mut pcm = Vec::new();
    while pcm.len() < MAX_DECODED {
        match reader.read_chunk(&mut pcm) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    assert!(
        pcm.iter().all(|x| x.is_finite()),
        "a decoder produced a non-finite sample"
    );
}

/// The streaming front end fed arbitrary values (NaN, infinities, denormals, anything
/// the bits say) in arbitrary chunks: no panic, the same windows as one single push
/// (bit for bit), and finite features whatever the samples.
pub fn frontend_stream(data: &[u8]) {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    let samples: Vec<f32> = rest
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let cfg = FrontEndConfig::birdset();
    let spec = WindowSpec {
        length_samples: 8 * cfg.hop_length,
        hop_samples: 2 * cfg.hop_length,
    };
    let windows = |chunks: &mut dyn Iterator<Item = &[f32]>| {
        let mut fe = StreamingFrontEnd::new(cfg.clone(), spec).expect("a valid front end");
        let mut out: Vec<(u64, Vec<u32>)> = Vec::new();
        let mut record = |info: WindowInfo, features: &[f32]| {
            out.push((
                info.start_sample,
                features.iter().map(|x| x.to_bits()).collect(),
            ));
        };
        for chunk in chunks {
            fe.push(chunk, &mut record);
        }
        fe.finish(&mut record);
        out
    };
    let whole = windows(&mut std::iter::once(&samples[..]));
    // Chunk sizes from the seed: 1 … 64 samples, cycling.
    let mut at = 0;
    let mut size = usize::from(seed % 64) + 1;
    let mut pieces = std::iter::from_fn(|| {
        if at >= samples.len() {
            return None;
        }
        let end = (at + size).min(samples.len());
        let piece = &samples[at..end];
        at = end;
        size = size * 7 % 64 + 1;
        Some(piece)
    });
    let chunked = windows(&mut pieces);
    assert!(whole == chunked, "chunking changed the windows");
    for (start, features) in &whole {
        assert!(
            features.iter().all(|&b| f32::from_bits(b).is_finite()),
            "non-finite features (window at {start})"
        );
    }
}

/// Any bytes as a model bundle (the one trusted key is the demo key, so nothing here is
/// signed by it) and as a bundle manifest: refused with an error, never a panic.
pub fn bundle(data: &[u8]) {
    static KEYS: OnceLock<TrustedKeys> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        let mut keys = TrustedKeys::new();
        let text = include_str!("../../models/demo/warble-demo.pub");
        keys.insert(PublicKey::parse(text, "warble-demo.pub").expect("the demo key parses"));
        keys
    });
    assert!(Bundle::from_bytes(data, keys, &Limits::default()).is_err());
    let _ = BundleManifest::from_json(data);
}

/// Any text as a station file: validated without panicking or reading anything.
pub fn station_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = warble_config::load_str(Path::new("station.toml"), &text);
}

/// Any bytes as a replay request from the collector: refused, or a request whose
/// range is within the limit.
pub fn replay_request(data: &[u8]) {
    use warble_core::wire::{MAX_RANGE, ReplayRequest};
    if let Ok(req) = ReplayRequest::parse(data) {
        assert!(req.first <= req.last && req.last - req.first < MAX_RANGE);
    }
}

/// Any bytes on a station's detections or heartbeat topic (the first byte says which):
/// the collector stores, counts or refuses them, and its store keeps working.
pub fn collector_message(data: &[u8]) {
    use warble_collect::store::Store;
    static STORE: OnceLock<Mutex<(tempfile::TempDir, Store)>> = OnceLock::new();
    let Some((&kind, payload)) = data.split_first() else {
        return;
    };
    let store = STORE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let store = Store::open(dir.path().join("fuzz.sqlite")).expect("a new store");
        Mutex::new((dir, store))
    });
    let mut guard = store.lock().unwrap_or_else(|e| e.into_inner());
    let store = &mut guard.1;
    if kind % 2 == 0 {
        store
            .ingest("wetland-03", payload)
            .expect("a hostile event is counted, not a store error");
    } else {
        store
            .note_heartbeat("wetland-03", payload)
            .expect("a hostile heartbeat is ignored, not a store error");
    }
}
