//! Training and evaluation data: manifests, loading and cropping of audio segments.

pub mod augment;
pub mod batcher;
pub mod cache;
pub mod loader;
pub mod manifest;
