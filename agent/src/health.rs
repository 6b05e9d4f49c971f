//! What a running station knows of itself: counters and states the recorder and delivery
//! update as they go (atomics: no lock on the audio path), turned into the heartbeat
//! ([`warble_core::wire::Heartbeat`]) that presence publishes.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use warble_core::event::ModelRef;
use warble_core::wire::{
    ClockState, DeliveryState, DeviceState, Engine, Heartbeat, ModelState, ReserveState,
};

use crate::delivery::DeliveryHealth;
use crate::events::SinkStats;
use crate::outbox::OutboxFacts;

/// Figures for heartbeats, updated by the capture loop and the delivery thread.
#[derive(Debug, Default)]
pub struct Health {
    /// Samples captured, at the capture rate.
    pub captured_samples: AtomicU64,
    /// Detections made.
    pub detections: AtomicU64,
    /// Samples lost to ring-buffer overruns.
    pub overruns: AtomicU64,
    /// RMS level of the last captured chunk, dBFS, as f32 bits.
    pub level_dbfs: AtomicU32,
    /// Windows classified.
    pub windows: AtomicU64,
    /// Time inside the inference engine, µs.
    pub inference_us: AtomicU64,
    /// Time spent processing captured audio (front end, model, detector), µs.
    pub busy_us: AtomicU64,
    /// 99th percentile of the window latency so far, µs.
    pub latency_p99_us: AtomicU64,
    /// Valid replay requests received (delivery serves them: see
    /// [`DeliveryHealth::replayed`]).
    pub replay_requests: AtomicU64,
    /// Inbound messages ignored (malformed, oversized, bad range).
    pub inbound_rejected: AtomicU64,
    /// Times the audio device failed or could not be reopened.
    pub device_failures: AtomicU64,
    /// The audio device could not be opened yet: waiting for it.
    pub waiting_for_device: AtomicBool,
    /// The clock reads before the agent's build time: waiting for it to be set.
    pub waiting_for_clock: AtomicBool,
    /// Outbox commits refused (retried; see [`crate::events`]).
    pub outbox_failures: AtomicU64,
    /// Detections waiting in memory for the outbox.
    pub held_events: AtomicU64,
    /// Detection rows the output (file or standard output) failed to write.
    pub output_failures: AtomicU64,
    /// What delivery reports: outbox depth, refusals.
    pub delivery: Arc<DeliveryHealth>,
    /// The model and the state of its update, once an update changed them (a lock: the
    /// recorder takes it only when models switch, never per window).
    pub model: Mutex<ModelNow>,
}

/// The model a station runs now, as the heartbeat says it.
#[derive(Debug, Default, Clone)]
pub struct ModelNow {
    /// The model, once it is not the one the station started with.
    pub model: Option<ModelRef>,
    /// Where model updates stand, on a station that takes them.
    pub state: Option<ModelState>,
}

impl Health {
    /// Notes the model producing detections now (a switch or a rollback).
    pub fn note_model(&self, model: ModelRef) {
        self.model_now().model = Some(model);
    }

    /// Notes where model updates stand.
    pub fn note_model_state(&self, state: ModelState) {
        self.model_now().state = Some(state);
    }

    fn model_now(&self) -> std::sync::MutexGuard<'_, ModelNow> {
        self.model
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What does not change while a station runs.
#[derive(Debug, Clone)]
pub struct StationFacts {
    /// When the agent started.
    pub started: Instant,
    /// The capture rate, Hz.
    pub capture_rate_hz: u32,
    /// The data folder (its filesystem's free space is reported).
    pub data_dir: PathBuf,
    /// The model.
    pub model: ModelRef,
    /// The engine it runs on.
    pub engine: Engine,
    /// This run's boot.
    pub boot: u64,
}

impl Health {
    /// Takes the event sink's counters (its events are the station's detections).
    pub fn note_sink(&self, s: &SinkStats) {
        self.detections.store(s.events, Ordering::Relaxed);
        self.outbox_failures
            .store(s.outbox_failures, Ordering::Relaxed);
        self.held_events.store(s.held, Ordering::Relaxed);
        self.output_failures
            .store(s.output_failures, Ordering::Relaxed);
    }

    /// The heartbeat now; `outbox` (when it could be read) says what the station holds.
    pub fn heartbeat(&self, facts: &StationFacts, outbox: Option<&OutboxFacts>) -> Heartbeat {
        let count = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let flag = |f: &AtomicBool| f.load(Ordering::Relaxed);
        let level = f32::from_bits(self.level_dbfs.load(Ordering::Relaxed));
        let audio_s = count(&self.captured_samples) as f64 / f64::from(facts.capture_rate_hz);
        let windows = count(&self.windows);
        let per_window_ms = |us: u64| (windows > 0).then(|| us as f64 / 1000.0 / windows as f64);
        let busy_s = count(&self.busy_us) as f64 / 1e6;
        let stats = outbox.map(|o| o.stats);
        let now = self.model_now().clone();
        Heartbeat {
            uptime_s: facts.started.elapsed().as_secs(),
            cpu_s: crate::resources::cpu_seconds(),
            peak_rss_bytes: crate::resources::peak_rss_bytes(),
            audio_s,
            audio_level_dbfs: level.is_finite().then_some(level),
            overruns: count(&self.overruns),
            detections: count(&self.detections),
            outbox_depth: stats.map(|s| s.depth),
            disk_free_bytes: crate::resources::disk_free_bytes(&facts.data_dir),
            windows,
            inference_ms: per_window_ms(count(&self.inference_us)),
            latency_p99_ms: (windows > 0).then(|| count(&self.latency_p99_us) as f64 / 1000.0),
            realtime_factor: (busy_s > 0.0).then(|| audio_s / busy_s),
            // Omitted (null) when it cannot be read: an empty list would tell collectors
            // that the station holds nothing any more.
            delivered: outbox.map(|o| o.delivered.clone()),
            // Lost to the quota, or acknowledged but not archived (a full disk).
            outbox_dropped: stats.map(|s| s.dropped_total),
            outbox_unarchived: stats.map(|s| s.unarchived_total),
            outbox_reserve: outbox.map(|o| {
                if o.reserve_released {
                    ReserveState::Released
                } else {
                    ReserveState::Kept
                }
            }),
            replay_requests: count(&self.replay_requests),
            replayed: count(&self.delivery.replayed),
            inbound_rejected: count(&self.inbound_rejected),
            device_failures: count(&self.device_failures),
            audio_device: if flag(&self.waiting_for_device) {
                DeviceState::Waiting
            } else {
                DeviceState::Open
            },
            delivery: if flag(&self.delivery.refused) {
                DeliveryState::Refused
            } else {
                DeliveryState::Accepted
            },
            clock: if flag(&self.waiting_for_clock) {
                ClockState::Waiting
            } else {
                ClockState::Set
            },
            outbox_failures: count(&self.outbox_failures),
            held_events: count(&self.held_events),
            output_failures: count(&self.output_failures),
            model: now.model.unwrap_or_else(|| facts.model.clone()),
            model_state: now.state,
            engine: Some(facts.engine),
            boot: facts.boot,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::Outbox;

    fn facts() -> StationFacts {
        StationFacts {
            started: Instant::now(),
            capture_rate_hz: 48_000,
            data_dir: std::env::temp_dir(),
            model: ModelRef {
                id: "m".into(),
                version: "1.0.0".into(),
            },
            engine: Engine::Tract,
            boot: 42,
        }
    }

    #[test]
    fn the_heartbeat_reports_means_rates_and_states() {
        let h = Health::default();
        h.captured_samples.store(96_000, Ordering::Relaxed);
        h.windows.store(4, Ordering::Relaxed);
        h.inference_us.store(10_000, Ordering::Relaxed);
        h.busy_us.store(500_000, Ordering::Relaxed);
        h.level_dbfs
            .store(f32::NEG_INFINITY.to_bits(), Ordering::Relaxed);
        h.waiting_for_clock.store(true, Ordering::Relaxed);
        h.delivery.refused.store(true, Ordering::Relaxed);
        let beat = h.heartbeat(&facts(), None);
        assert_eq!(beat.audio_s, 2.0);
        assert_eq!(beat.inference_ms, Some(2.5), "the mean per window");
        assert_eq!(beat.realtime_factor, Some(4.0), "2 s of audio in 0.5 s");
        assert_eq!(beat.audio_level_dbfs, None, "silence is no level");
        assert_eq!(beat.clock, ClockState::Waiting);
        assert_eq!(beat.delivery, DeliveryState::Refused);
        assert_eq!(beat.audio_device, DeviceState::Open);
        assert_eq!((beat.boot, beat.engine), (42, Some(Engine::Tract)));
        // Without the outbox nothing is claimed about what the station holds.
        assert_eq!((beat.delivered, beat.outbox_reserve), (None, None));
        assert_eq!(beat.outbox_depth, None, "not a depth of 0");
        let idle = Health::default().heartbeat(&facts(), None);
        assert_eq!((idle.inference_ms, idle.realtime_factor), (None, None));
    }

    #[test]
    fn with_its_outbox_the_heartbeat_says_what_the_station_holds() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(dir.path().join("outbox.sqlite"), 1 << 20).unwrap();
        let beat = Health::default().heartbeat(&facts(), Some(&outbox.facts().unwrap()));
        assert_eq!(beat.delivered, Some(Vec::new()));
        // Events waiting while the broker is away.
        let events: Vec<_> = (0..3).map(warble_tests::events::sample_event).collect();
        outbox.push(&events).unwrap();
        let beat = Health::default().heartbeat(&facts(), Some(&outbox.facts().unwrap()));
        assert_eq!(beat.outbox_depth, Some(3));
        assert_eq!(beat.outbox_reserve, Some(ReserveState::Kept));
        assert_eq!(beat.outbox_dropped, Some(0));
    }
}
