//! Warble station and fleet configuration (to be built): a raw TOML layer, a validated
//! typed layer that reports every problem with its location, and rendering of per-station
//! files for deployment.
//!
//! This crate holds no code yet; see the firmware-config issue.
#![deny(missing_docs)]
