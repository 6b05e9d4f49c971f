//! Per-clip normalisation: top-dB floor, standardisation, and the transpose from
//! frame-major analysis order to the model's `(n_mels, frames)` layout.

use super::FrontEndConfig;

/// Floors `db` (frames × n_mels, frame-major) at its maximum minus `top_db`, standardises,
/// and writes `out` as (n_mels × frames, mel-major).
///
/// The floor is taken over this one clip, so a clip's features never depend on its
/// batch-mates or on the audio around a streaming window.
pub(crate) fn finalise(db: &[f32], n_mels: usize, cfg: &FrontEndConfig, out: &mut [f32]) {
    let frames = db.len() / n_mels;
    debug_assert_eq!(out.len(), db.len());
    let max = db.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let floor = max - cfg.top_db as f32;
    let mean = cfg.mean as f32;
    let inv_std = (1.0 / cfg.std) as f32;
    for (f, column) in db.chunks_exact(n_mels).enumerate() {
        for (m, &v) in column.iter().enumerate() {
            out[m * frames + f] = (v.max(floor) - mean) * inv_std;
        }
    }
}
