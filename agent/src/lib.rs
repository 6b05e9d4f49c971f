//! The Warble recorder agent.
//!
//! - [`analyze`]: recordings → streaming front end → batched inference → events, with a
//!   verified, self-tested bundle.
//! - [`detect`]: thresholds, species lists, merging and repeat-confirmation.
//! - [`output`]: JSON Lines events, CSV, Raven and BirdNET-Analyzer tables.
//! - [`outbox`]: the durable SQLite outbox events wait in until the broker acknowledges them.
//! - [`publish`]: delivery of the outbox over MQTT (QoS 1, ack-then-delete, backoff).
//! - [`collect`]: the collector's store (`warble-collect`): events once by id, gaps,
//!   duplicates, late arrivals.
//! - [`features`]: the front end alone, per-window summaries (no model needed).
//! - [`resources`]: peak memory and CPU time.
//! - [`station`]: the persisted boot counter behind unique event ids.
//!
//! Live capture, heartbeats and model updates arrive with their issues.
#![deny(missing_docs)]

pub mod analyze;
pub mod capture;
pub mod collect;
pub mod detect;
pub mod features;
pub mod outbox;
pub mod output;
pub mod publish;
pub mod resources;
pub mod station;
