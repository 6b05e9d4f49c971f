//! The running station's delivery: one MQTT connection held for as long as the broker
//! keeps it, woken the moment the event sink commits a detection (no polling interval on
//! the path from the outbox to the broker; an idle look every [`RECHECK`] picks up what
//! other writers of the outbox commit), and a clean stop that lets what is in flight
//! be acknowledged. A connection that fails is replaced after the one backoff; a broker
//! that refuses the station's detections is asked again each minute; every lasting
//! problem is said once, and its end too.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use warble_mqtt::reconnect_backoff;

use crate::outbox::Outbox;
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

/// What delivery reports to the station's heartbeat and to systemd.
#[derive(Debug, Default)]
pub struct DeliveryHealth {
    /// Events waiting in the outbox.
    pub outbox_depth: AtomicU64,
    /// The broker refuses the station's detections: they wait in the outbox.
    pub refused: AtomicBool,
    problem: Mutex<Option<String>>,
}

impl DeliveryHealth {
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
                    if let DeliveryError::Refused {
                        topic,
                        reason,
                        kept,
                    } = &e
                    {
                        self.health.outbox_depth.store(*kept, Ordering::Relaxed);
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
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = shutdown.cancelled() => {
                    // One last brief round, as every clean stop has.
                    let deadline = Instant::now() + FINAL_FLUSH;
                    if let Ok(report) = drain(&mut self.outbox, &self.cfg, deadline).await {
                        self.health.outbox_depth.store(report.pending, Ordering::Relaxed);
                    }
                    return Ok(());
                }
            }
        }
    }
}
