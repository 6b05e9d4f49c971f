//! Training and evaluation data: manifests, loading and cropping of audio segments.

pub mod loader;
pub mod manifest;
