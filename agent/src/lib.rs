//! The Warble recorder agent.
//!
//! - [`analyze`]: recordings → streaming front end → batched inference → events, with a
//!   verified, self-tested bundle.
//! - [`detect`]: thresholds, species lists, merging and repeat-confirmation.
//! - [`pcm`]: raw PCM from a pipe, mixed down and resampled.
//! - [`recorder`]: a running station's audio path, from an [`recorder::AudioSource`] to
//!   committed detections, on one blocking thread.
//! - [`delivery`]: a running station's delivery over one long-lived connection, woken
//!   as events are committed.
//! - [`daily`]: a station's detection files, one per day and format.
//! - [`output`]: event ids, JSON Lines events, CSV, Raven and BirdNET-Analyzer tables.
//! - [`events`]: where a closed detection goes: minted, committed to the outbox, then
//!   written to the output.
//! - [`outbox`]: the durable SQLite outbox events wait in until the broker acknowledges them.
//! - [`publish`]: delivery of the outbox over MQTT (QoS 1, ack-then-delete, backoff).
//! - [`presence`]: the station's status, heartbeats and Home Assistant discovery on the
//!   broker, and the replay requests it hands delivery.
//! - [`settings`]: the station file and the command line resolved once into typed settings.
//! - [`model`]: the verified, self-tested model ([`model::LoadedModel`]), the one way a
//!   model enters the agent.
//! - [`health`]: a running station's counters and states, and its heartbeat.
//! - [`features`]: the front end alone, per-window summaries (no model needed).
//! - [`resources`]: peak memory and CPU time.
//! - [`species`]: the station file's species codes checked against the model's labels.
//! - [`station`]: the persisted boot counter behind unique event ids.
//! - [`updates`], [`updater`]: model updates over MQTT: which offers are taken, the
//!   ledger, the slots; [`probation`]: a new model judged beside the previous one.
//!
//! - [`capture`]: live audio through cpal into a lock-free ring buffer.
//! - [`clips`]: WAV clips of live detections, with privacy classes, quota and retention.
#![deny(missing_docs)]

pub mod analyze;
pub mod capture;
pub mod clips;
pub mod daily;
pub mod delivery;
pub mod detect;
pub mod events;
pub mod features;
pub mod health;
pub mod model;
pub mod outbox;
pub mod output;
pub mod pcm;
pub mod presence;
pub mod probation;
pub mod publish;
pub mod recorder;
pub mod resources;
pub mod settings;
pub mod species;
pub mod station;
pub mod timeline;
pub mod updater;
pub mod updates;
