//! Export parity for every architecture and size preset: burn vs the written ONNX graph in
//! ONNX Runtime and tract, on random standardised inputs (batch 2, 128 mel × 501 frames:
//! the BirdSet front end's 5-s window). Layer scale is set to 1 so that every block's branch
//! shapes the logits (a trained model's scales are far above the 1e-6 initialisation).
//!
//! Run: `cargo bench -p warble-export --bench parity` (prints one Markdown row per model).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::Instant;

use burn::prelude::*;
use rand::{RngExt, SeedableRng};
use warble_export::onnx::{self, Architecture};
use warble_export::parity;
use warble_infer::EngineChoice;
use warble_trainer::model::convnext::{ConvNextConfig, ConvNextSize};
use warble_trainer::model::protopnet::ProtoPNetConfig;

const SIZES: [ConvNextSize; 8] = [
    ConvNextSize::Test,
    ConvNextSize::Micro,
    ConvNextSize::Atto,
    ConvNextSize::Femto,
    ConvNextSize::Pico,
    ConvNextSize::Nano,
    ConvNextSize::Tiny,
    ConvNextSize::Base,
];

fn main() {
    let only: Option<String> = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    let device = Device::flex();
    device.seed(1);
    let (n_mels, frames) = (128, 501);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let data: Vec<f32> = (0..2 * n_mels * frames)
        .map(|_| rng.random_range(-3.0f32..3.0))
        .collect();
    let batches = vec![(data, [2, 1, n_mels, frames])];
    println!("| architecture | size | ONNX MB | ONNX Runtime max abs | tract max abs | time |");
    println!("|---|---|---|---|---|---|");
    for size in SIZES {
        for proto in [false, true] {
            let name = format!("{size:?}").to_lowercase();
            if only.as_deref().is_some_and(|o| o != name) {
                continue;
            }
            let t = Instant::now();
            let backbone = ConvNextConfig::preset(size, 10).with_layer_scale_init(1.0);
            let arch = if proto {
                let config = ProtoPNetConfig::new(backbone);
                Architecture::ProtoPNet {
                    model: config.init(&device),
                    config,
                }
            } else {
                Architecture::ConvNext {
                    model: backbone.init(&device),
                    config: backbone,
                }
            };
            let bytes = onnx::write(&arch, n_mels, frames).unwrap();
            let report = parity::check(
                &arch,
                &bytes,
                &batches,
                &[EngineChoice::Ort, EngineChoice::Tract],
                None,
                &device,
                || {},
            )
            .unwrap();
            println!(
                "| {} | {name} | {:.1} | {:.1e} | {:.1e} | {:.1} s |",
                arch.name(),
                bytes.len() as f64 / 1e6,
                report.engines[0].max_abs_diff,
                report.engines[1].max_abs_diff,
                t.elapsed().as_secs_f64()
            );
        }
    }
}
