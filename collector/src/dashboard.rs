//! The fleet dashboard's data: the JSON documents `warble-collect serve` answers under
//! `/api/` (and the page at `/` draws), each read from the store at the request.
//!
//! | endpoint | document |
//! |---|---|
//! | `GET /api/fleet` | [`Fleet`]: every station's presence, last heartbeat, model, outbox, gaps |
//! | `GET /api/timeline?bucket=10s\|minute\|hour\|day` | [`Timeline`]: detections per station and time bucket (the bucket fits the data when not given) |
//! | `GET /api/species?station=S&limit=N` | [`SpeciesTally`] list: the most heard species of a station, or of the fleet |
//! | `GET /api/stations/S` | [`StationPage`]: one station, its recent detections, its top species and a day of heartbeats |

use chrono::{DateTime, Utc};
use serde::Serialize;
use warble_core::event::Detection;
use warble_core::wire::Heartbeat;

use crate::store::{Bucket, CollectError, SpeciesTally, StationState, Store, TimelineCount};

/// How many recent detections a station page lists.
pub const RECENT_DETECTIONS: usize = 100;

/// How far back a station page's heartbeat plot reaches.
pub const HEARTBEAT_WINDOW_S: i64 = 24 * 3600;

/// The most species an `/api/species` answer lists.
pub const MAX_SPECIES: usize = 500;

/// `GET /api/fleet`.
#[derive(Debug, Clone, Serialize)]
pub struct Fleet {
    /// When the store was read.
    pub generated_at: DateTime<Utc>,
    /// Every station the store knows, in station order.
    pub stations: Vec<StationSummary>,
}

/// A station as the fleet table shows it.
#[derive(Debug, Clone, Serialize)]
pub struct StationSummary {
    /// Station id.
    pub station: String,
    /// What its retained status says (`null`: never heard).
    pub online: Option<bool>,
    /// The agent version its status names.
    pub agent: Option<String>,
    /// When its status arrived.
    pub status_at: Option<DateTime<Utc>>,
    /// When its last heartbeat arrived.
    pub heartbeat_at: Option<DateTime<Utc>>,
    /// Seconds since then, at `generated_at`.
    pub heartbeat_age_s: Option<f64>,
    /// Its last heartbeat, as the station sent it (`warble.heartbeat/1`).
    pub heartbeat: Option<Heartbeat>,
    /// Detections stored.
    pub detections: u64,
    /// Start of the latest detection stored.
    pub last_detection: Option<DateTime<Utc>>,
    /// Sequence numbers missing that the station can still send.
    pub missing: u64,
    /// Sequence numbers missing that the station no longer holds.
    pub lost: u64,
    /// Messages that repeated a stored detection.
    pub duplicates: u64,
}

/// `GET /api/timeline`.
#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    /// The bucket width.
    pub bucket: Bucket,
    /// Per station and bucket, oldest first; buckets without detections are absent.
    pub counts: Vec<TimelineCount>,
}

/// `GET /api/stations/S`.
#[derive(Debug, Clone, Serialize)]
pub struct StationPage {
    /// The station as the fleet table shows it.
    pub summary: StationSummary,
    /// Its latest [`RECENT_DETECTIONS`] detections, newest first (`warble.detection/1`,
    /// the latest revision of each).
    pub recent: Vec<Detection>,
    /// Its most heard species.
    pub species: Vec<SpeciesTally>,
    /// The heartbeats kept of the last [`HEARTBEAT_WINDOW_S`], oldest first.
    pub heartbeats: Vec<HeartbeatPoint>,
}

/// One kept heartbeat, for plots.
#[derive(Debug, Clone, Serialize)]
pub struct HeartbeatPoint {
    /// When it arrived.
    pub at: DateTime<Utc>,
    /// Detections waiting in the outbox.
    pub outbox_depth: Option<u64>,
    /// Seconds of audio analysed per second of compute.
    pub realtime_factor: Option<f64>,
    /// Mean inference time per window.
    pub inference_ms: Option<f64>,
    /// The input level.
    pub audio_level_dbfs: Option<f32>,
    /// Free space on the data disk.
    pub disk_free_bytes: Option<u64>,
}

/// The fleet as of `now`.
///
/// # Errors
/// The store could not be read.
pub fn fleet(store: &mut Store, now: DateTime<Utc>) -> Result<Fleet, CollectError> {
    let states = store.fleet()?;
    let mut stations = Vec::with_capacity(states.len());
    for state in states {
        stations.push(summary(store, state, now)?);
    }
    Ok(Fleet {
        generated_at: now,
        stations,
    })
}

/// One station's page as of `now`; `None` when the store does not know it.
///
/// # Errors
/// The store could not be read.
pub fn station(
    store: &mut Store,
    station: &str,
    now: DateTime<Utc>,
) -> Result<Option<StationPage>, CollectError> {
    let Some(state) = store.fleet()?.into_iter().find(|s| s.station == station) else {
        return Ok(None);
    };
    let summary = summary(store, state, now)?;
    let heartbeats = store
        .heartbeats(station, now - chrono::Duration::seconds(HEARTBEAT_WINDOW_S))?
        .into_iter()
        .map(|(at, b)| HeartbeatPoint {
            at,
            outbox_depth: b.outbox_depth,
            realtime_factor: b.realtime_factor,
            inference_ms: b.inference_ms,
            audio_level_dbfs: b.audio_level_dbfs,
            disk_free_bytes: b.disk_free_bytes,
        })
        .collect();
    Ok(Some(StationPage {
        summary,
        recent: store.recent(station, RECENT_DETECTIONS)?,
        species: store.top_species(Some(station), MAX_SPECIES)?,
        heartbeats,
    }))
}

/// Detections over time in `bucket`, or in the finest bucket that fits the stored span.
///
/// # Errors
/// The store could not be read.
pub fn timeline(store: &mut Store, bucket: Option<Bucket>) -> Result<Timeline, CollectError> {
    let bucket = match bucket {
        Some(b) => b,
        None => store
            .detection_span()?
            .map_or(Bucket::Hour, |(first, last)| Bucket::fitting(first, last)),
    };
    Ok(Timeline {
        bucket,
        counts: store.timeline(bucket)?,
    })
}

fn summary(
    store: &mut Store,
    state: StationState,
    now: DateTime<Utc>,
) -> Result<StationSummary, CollectError> {
    let report = store.station_report(&state.station)?;
    let last_detection = store.recent(&state.station, 1)?.first().map(|d| d.start);
    Ok(StationSummary {
        heartbeat_age_s: state
            .heartbeat_at
            .map(|at| (now - at).as_seconds_f64().max(0.0)),
        detections: report.events,
        missing: report.missing(),
        lost: report.lost_events(),
        duplicates: report.duplicates,
        last_detection,
        online: state.online,
        agent: state.agent,
        status_at: state.status_at,
        heartbeat_at: state.heartbeat_at,
        heartbeat: state.heartbeat,
        station: state.station,
    })
}
