//! The Warble collector (`warble-collect`): the other end of the stations' MQTT delivery.
//!
//! - [`store`]: every station's events once by id (SQLite, or PostgreSQL shared by a
//!   fleet's collectors), with gaps, duplicates, late arrivals, what stations say they
//!   still hold, and the replay requests for what is missing; the stations' status and
//!   heartbeats.
//! - [`serve`]: the fleet over HTTP — [`metrics`] in the Prometheus text format, and the
//!   [`dashboard`]: a web page and the JSON documents it draws.
//! - [`watch`]: a subscriber that prints detections as they arrive, with their latency
//!   and the ground truth.
//!
//! It builds none of the recorder's audio or inference stack: a collector host needs
//! neither ALSA nor ONNX Runtime.
#![deny(missing_docs)]

pub mod dashboard;
pub mod metrics;
pub mod serve;
pub mod store;
pub mod watch;
