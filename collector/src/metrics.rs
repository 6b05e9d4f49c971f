//! The fleet in the Prometheus (OpenMetrics) text format, read from the store at each
//! scrape (`warble-collect serve`, `GET /metrics`): what the stations' retained status and
//! last heartbeats say, and what the store holds of their detections and gaps.
//!
//! Names and labels (every series is per `station`):
//!
//! | metric | type | from |
//! |---|---|---|
//! | `warble_station_up` | gauge | 1 while the retained status says online (an `offline` last will sets 0) |
//! | `warble_station_info{agent,model,model_version,engine}` | gauge (1) | status and heartbeat |
//! | `warble_station_heartbeat_age_seconds` | gauge | since the last heartbeat arrived |
//! | `warble_station_uptime_seconds` | gauge | heartbeat |
//! | `warble_station_outbox_depth` | gauge | heartbeat: events waiting for the broker |
//! | `warble_station_outbox_dropped_total` | counter | heartbeat: dropped by the outbox quota |
//! | `warble_station_overruns_total` | counter | heartbeat: samples lost to capture overruns |
//! | `warble_station_inference_ms` | gauge | heartbeat: mean inference time per window |
//! | `warble_station_realtime_factor` | gauge | heartbeat: audio seconds per second of compute |
//! | `warble_station_disk_free_bytes` | gauge | heartbeat |
//! | `warble_station_detections_total{code}` | counter | store: events by species |
//! | `warble_station_missing_events` | gauge | store: seqs missing that the station can still send |
//! | `warble_station_lost_events` | gauge | store: seqs missing that the station no longer holds |
//! | `warble_station_duplicates_total`, `warble_station_conflicts_total` | counter | store |
//! | `warble_invalid_messages_total` | counter | store: messages that were not events (no station label) |
//!
//! A series whose source never said (no heartbeat yet, an older agent without the field)
//! is absent, not zero.

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::store::{CollectError, Store};

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StationLabel {
    station: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SpeciesLabel {
    station: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabel {
    station: String,
    agent: String,
    model: String,
    model_version: String,
    engine: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Registers `metric` under `name` and returns it.
fn registered<M: prometheus_client::registry::Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// The fleet's metrics as of `now`.
///
/// # Errors
/// The store could not be read.
pub fn render(store: &mut Store, now: DateTime<Utc>) -> Result<String, CollectError> {
    let mut r = Registry::default();
    let up = registered(
        &mut r,
        "warble_station_up",
        "Whether the station's retained status says online",
        Family::<StationLabel, Gauge>::default(),
    );
    let info = registered(
        &mut r,
        "warble_station_info",
        "The station's agent version, model and engine (value 1)",
        Family::<InfoLabel, Gauge>::default(),
    );
    let age = registered(
        &mut r,
        "warble_station_heartbeat_age_seconds",
        "Seconds since the station's last heartbeat arrived",
        Family::<StationLabel, FloatGauge>::default(),
    );
    let uptime = registered(
        &mut r,
        "warble_station_uptime_seconds",
        "The agent's uptime",
        Family::<StationLabel, Gauge>::default(),
    );
    let depth = registered(
        &mut r,
        "warble_station_outbox_depth",
        "Detections waiting in the station's outbox for the broker",
        Family::<StationLabel, Gauge>::default(),
    );
    let dropped = registered(
        &mut r,
        "warble_station_outbox_dropped",
        "Detections the station's outbox quota dropped",
        Family::<StationLabel, Counter>::default(),
    );
    let overruns = registered(
        &mut r,
        "warble_station_overruns",
        "Samples lost to capture overruns",
        Family::<StationLabel, Counter>::default(),
    );
    let inference = registered(
        &mut r,
        "warble_station_inference_ms",
        "Mean inference time per window, milliseconds",
        Family::<StationLabel, FloatGauge>::default(),
    );
    let rtf = registered(
        &mut r,
        "warble_station_realtime_factor",
        "Seconds of audio analysed per second of compute",
        Family::<StationLabel, FloatGauge>::default(),
    );
    let disk = registered(
        &mut r,
        "warble_station_disk_free_bytes",
        "Free space on the station's data disk",
        Family::<StationLabel, Gauge>::default(),
    );
    let detections = registered(
        &mut r,
        "warble_station_detections",
        "Detections stored, by species code",
        Family::<SpeciesLabel, Counter>::default(),
    );
    let missing = registered(
        &mut r,
        "warble_station_missing_events",
        "Sequence numbers missing from the store that the station can still send",
        Family::<StationLabel, Gauge>::default(),
    );
    let lost = registered(
        &mut r,
        "warble_station_lost_events",
        "Sequence numbers missing from the store that the station no longer holds",
        Family::<StationLabel, Gauge>::default(),
    );
    let duplicates = registered(
        &mut r,
        "warble_station_duplicates",
        "Messages that repeated a stored detection",
        Family::<StationLabel, Counter>::default(),
    );
    let conflicts = registered(
        &mut r,
        "warble_station_conflicts",
        "Messages that reused a stored detection's id with other content",
        Family::<StationLabel, Counter>::default(),
    );
    let invalid = registered(
        &mut r,
        "warble_invalid_messages",
        "Messages on a detections topic that were not detections",
        Counter::<u64>::default(),
    );

    let label = |station: &str| StationLabel {
        station: station.to_owned(),
    };
    let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    for s in store.fleet()? {
        let l = label(&s.station);
        if let Some(online) = s.online {
            up.get_or_create(&l).set(i64::from(online));
        }
        if let (Some(at), Some(beat)) = (s.heartbeat_at, s.heartbeat.as_ref()) {
            age.get_or_create(&l)
                .set((now - at).as_seconds_f64().max(0.0));
            uptime.get_or_create(&l).set(as_i64(beat.uptime_s));
            overruns.get_or_create(&l).inc_by(beat.overruns);
            if let Some(d) = beat.outbox_depth {
                depth.get_or_create(&l).set(as_i64(d));
            }
            if let Some(d) = beat.outbox_dropped {
                dropped.get_or_create(&l).inc_by(d);
            }
            if let Some(ms) = beat.inference_ms {
                inference.get_or_create(&l).set(ms);
            }
            if let Some(f) = beat.realtime_factor {
                rtf.get_or_create(&l).set(f);
            }
            if let Some(b) = beat.disk_free_bytes {
                disk.get_or_create(&l).set(as_i64(b));
            }
        }
        let (model, model_version, engine) =
            s.heartbeat.as_ref().map_or_else(Default::default, |b| {
                (
                    b.model.id.clone(),
                    b.model.version.clone(),
                    b.engine
                        .and_then(|e| serde_json::to_value(e).ok())
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                )
            });
        info.get_or_create(&InfoLabel {
            station: s.station.clone(),
            agent: s.agent.clone().unwrap_or_default(),
            model,
            model_version,
            engine,
        })
        .set(1);
    }
    for (station, code, n) in store.species_counts()? {
        detections
            .get_or_create(&SpeciesLabel { station, code })
            .inc_by(n);
    }
    let reports = store.report()?;
    if let Some(first) = reports.first() {
        invalid.inc_by(first.invalid);
    }
    for rep in reports {
        let l = label(&rep.station);
        missing.get_or_create(&l).set(as_i64(rep.missing()));
        lost.get_or_create(&l).set(as_i64(rep.lost_events()));
        duplicates.get_or_create(&l).inc_by(rep.duplicates);
        conflicts.get_or_create(&l).inc_by(rep.conflicts);
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &r).map_err(|e| CollectError::Encode {
        what: "the metrics",
        reason: e.to_string(),
    })?;
    Ok(text)
}
