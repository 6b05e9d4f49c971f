//! The running station's delivery: one MQTT connection held for as long as the broker
//! keeps it, woken the moment the event sink commits a detection (no polling interval on
//! the path from the outbox to the broker; an idle look every [`RECHECK`] picks up what
//! other writers of the outbox commit), and a clean stop that lets what is in flight
//! be acknowledged. A connection that fails is replaced after the one backoff; a broker
//! that refuses the station's detections is asked again each minute; every lasting
//! problem is said once, and its end too.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use warble_mqtt::reconnect_backoff;

use warble_core::wire::ReplayRequest;

use crate::outbox::{Outbox, OutboxFacts};
use crate::publish::{BrokerConfig, DeliveryError, DrainReport, Live, SessionEnd, drain, session};

/// How long a broker that refused the station's detections waits to be asked again.
const REFUSED_RETRY: Duration = Duration::from_secs(60);

/// How long an idle connection waits without a wake before it looks at the outbox anyway:
/// the station's own detections wake delivery at once, but other writers of the same
/// outbox do not (an `analyze --config` beside the running station, a replay request
/// served by presence in another thread, `deliver` in another process).
pub const RECHECK: Duration = Duration::from_secs(2);

/// How long a clean stop gives the broker to acknowledge what is in flight and take what
/// waits.
pub const FINAL_FLUSH: Duration = Duration::from_secs(5);

/// Replay requests waiting for delivery to serve them; more are refused (a subscriber
/// asks again).
pub const MAX_WAITING_REPLAYS: usize = 64;

/// What delivery shares with the rest of the station: what it reports to the heartbeat
/// and to systemd, and the replay requests presence hands it (delivery is the outbox's
/// one user on the network side: it serves them and reads what the heartbeat says the
/// outbox holds).
#[derive(Debug, Default)]
pub struct DeliveryHealth {
    /// The broker refuses the station's detections: they wait in the outbox.
    pub refused: AtomicBool,
    /// Events queued again for replay requests.
    pub replayed: AtomicU64,
    outbox: Mutex<Option<OutboxFacts>>,
    replays: Mutex<VecDeque<ReplayRequest>>,
    problem: Mutex<Option<String>>,
}

impl DeliveryHealth {
    /// What the outbox held when delivery last looked (`None`: not read yet, or it could
    /// not be read).
    pub fn outbox(&self) -> Option<OutboxFacts> {
        self.outbox.lock().ok().and_then(|f| f.clone())
    }

    /// Reads what `outbox` holds for the heartbeat; returns its depth when it can.
    pub(crate) fn note_outbox(&self, outbox: &Outbox) -> Option<u64> {
        let facts = outbox.facts();
        let depth = facts.as_ref().ok().map(|f| f.stats.depth);
        if let Ok(mut held) = self.outbox.lock() {
            *held = facts.ok();
        }
        depth
    }

    /// Hands delivery a replay request; `false` when [`MAX_WAITING_REPLAYS`] wait already.
    pub fn request_replay(&self, request: ReplayRequest) -> bool {
        let Ok(mut waiting) = self.replays.lock() else {
            return false;
        };
        if waiting.len() >= MAX_WAITING_REPLAYS {
            return false;
        }
        waiting.push_back(request);
        true
    }

    /// Serves the waiting replay requests from `outbox`'s archive; returns the events
    /// queued again.
    pub(crate) fn serve_replays(&self, outbox: &mut Outbox) -> u64 {
        let waiting: Vec<_> = match self.replays.lock() {
            Ok(mut w) if !w.is_empty() => w.drain(..).collect(),
            _ => return 0,
        };
        let mut queued = 0;
        for req in waiting {
            match outbox.replay(req.boot, req.first, req.last) {
                Ok(n) => {
                    queued += n;
                    tracing::info!(
                        "replay of boot {} seq {}–{} requested: {n} event(s) queued again",
                        req.boot,
                        req.first,
                        req.last
                    );
                }
                Err(e) => tracing::error!("replay of boot {}: {e}", req.boot),
            }
        }
        self.replayed.fetch_add(queued, Ordering::Relaxed);
        self.note_outbox(outbox);
        queued
    }

    /// A problem that lasts, said once while its `key` stays the same.
    pub(crate) fn trouble(&self, key: &str, said: &str) {
        let Ok(mut problem) = self.problem.lock() else {
            return;
        };
        if problem.as_deref() != Some(key) {
            tracing::warn!("{said}");
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(said)]);
            *problem = Some(key.to_owned());
        }
    }

    /// Delivery works (an event acknowledged, or nothing left to send).
    pub(crate) fn fine(&self) {
        self.refused.store(false, Ordering::Relaxed);
        let Ok(mut problem) = self.problem.lock() else {
            return;
        };
        if problem.take().is_some() {
            let said = "delivery: working again";
            tracing::info!("{said}");
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(said)]);
        }
    }
}

/// The delivery of a running station.
#[derive(Debug)]
pub struct Delivery {
    outbox: Outbox,
    cfg: BrokerConfig,
    wake: Arc<Notify>,
    health: Arc<DeliveryHealth>,
    recheck: Duration,
}

impl Delivery {
    /// Delivers `outbox` to the broker of `cfg`; `wake` is notified by whoever commits a
    /// new event; `health` is where the loop reports.
    pub fn new(
        outbox: Outbox,
        cfg: BrokerConfig,
        wake: Arc<Notify>,
        health: Arc<DeliveryHealth>,
    ) -> Self {
        Self {
            outbox,
            cfg,
            wake,
            health,
            recheck: RECHECK,
        }
    }

    /// Looks at the outbox every `recheck` while idle, instead of [`RECHECK`].
    #[must_use]
    pub fn with_recheck(mut self, recheck: Duration) -> Self {
        self.recheck = recheck;
        self
    }

    /// Runs until `shutdown`, then gives what is in flight and what waits
    /// [`FINAL_FLUSH`] to be acknowledged (the rest stays in the outbox for next time).
    ///
    /// # Errors
    /// None in practice: the outbox's and the broker's failures are reported through
    /// [`DeliveryHealth`] and retried.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), DeliveryError> {
        let mut backoff = reconnect_backoff();
        self.health.serve_replays(&mut self.outbox);
        self.health.note_outbox(&self.outbox);
        loop {
            // No deadline while running: a stop request sets one.
            let far = Instant::now() + Duration::from_secs(30 * 86_400);
            let mut report = DrainReport::default();
            let live = Live {
                wake: &self.wake,
                recheck: self.recheck,
                shutdown: &shutdown,
                health: &self.health,
            };
            let ended = session(
                &mut self.outbox,
                &self.cfg,
                far,
                &mut report,
                &mut backoff,
                Some(live),
            )
            .await;
            let pause = match ended {
                Ok(SessionEnd::Drained | SessionEnd::Deadline) => return Ok(()),
                Ok(SessionEnd::Failed(reason)) => {
                    self.health
                        .trouble(&reason, &format!("delivery: {reason}; retrying"));
                    // Whatever is delivered after an outage is late.
                    if let Err(e) = self.outbox.mark_historical() {
                        self.health
                            .trouble(&e.to_string(), &format!("delivery: {e}"));
                    }
                    backoff.take()
                }
                Err(e @ DeliveryError::Refused { .. }) => {
                    if let DeliveryError::Refused { topic, reason, .. } = &e {
                        self.health.note_outbox(&self.outbox);
                        self.health.refused.store(true, Ordering::Relaxed);
                        self.health.trouble(
                            &format!("refused {topic} {reason}"),
                            &format!("delivery: {e}; asking again every minute"),
                        );
                    }
                    REFUSED_RETRY
                }
                Err(e) => {
                    self.health
                        .trouble(&e.to_string(), &format!("delivery: {e}"));
                    backoff.take()
                }
            };
            if self.pause(pause, &shutdown).await {
                // One last brief round, as every clean stop has.
                let deadline = Instant::now() + FINAL_FLUSH;
                let _ = drain(&mut self.outbox, &self.cfg, deadline).await;
                self.health.note_outbox(&self.outbox);
                return Ok(());
            }
        }
    }

    /// Waits `pause` before the next connection, serving replay requests and keeping the
    /// heartbeat's view of the outbox current meanwhile (events pile up in an outage,
    /// which is when operators watch the depth); `true` when a stop was asked for.
    async fn pause(&mut self, pause: Duration, shutdown: &CancellationToken) -> bool {
        let until = Instant::now() + pause;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(until) => return false,
                () = shutdown.cancelled() => return true,
                _ = tokio::time::timeout(self.recheck, self.wake.notified()) => {
                    self.health.serve_replays(&mut self.outbox);
                    self.health.note_outbox(&self.outbox);
                }
            }
        }
    }
}
