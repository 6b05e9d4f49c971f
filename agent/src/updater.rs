//! The station's side of model updates over MQTT: it reads the retained offers on its
//! own bundle topic and its group's (its own beats its group's), checks each
//! ([`crate::updates::assess`]), writes what passes to the inactive slot durably,
//! self-tests it in the engine that will run it, and hands the model to the recorder.
//! Every step is reported, retained, on `<prefix>/<station>/model`.
//!
//! The checks and the self-test are CPU work: they run on a blocking thread while the
//! connection keeps being served; reports come back over a channel.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Filter, Packet};
use rumqttc::v5::{AsyncClient, Event};
use tokio_util::sync::CancellationToken;
use warble_config::StationConfig;
use warble_core::bundle::TrustedKeys;
use warble_core::bundle::offer::{MAX_OFFER_BYTES, Offer};
use warble_core::wire::{Candidate, Leaf, ModelReport, ModelState, ModelVersion};
use warble_infer::EngineConfig;
use warble_mqtt::reconnect_backoff;

use crate::model::LoadedModel;
use crate::publish::BrokerConfig;
use crate::updates::{Ledger, Policy, assess, candidate_of, version_of};

/// The file of the ledger in the slot directory.
pub const LEDGER_FILE: &str = "state.json";

/// What the updater needs besides the broker.
#[derive(Debug, Clone)]
pub struct UpdaterConfig {
    /// The broker and the station's topics.
    pub broker: BrokerConfig,
    /// The station's fleet group, whose bundle topic it also reads.
    pub group: Option<String>,
    /// Keys that may sign offers and bundles.
    pub trusted: TrustedKeys,
    /// Key ids refused even if trusted.
    pub revoked: Vec<String>,
    /// The station's settings.
    pub station: Arc<StationConfig>,
    /// Where the slots and the ledger live.
    pub slot_dir: PathBuf,
    /// The engine the model will run in (and is self-tested in).
    pub engine: EngineConfig,
}

/// A model that passed every check and its self-test, written to `slot`.
#[derive(Debug)]
pub struct Installed {
    /// The model.
    pub model: LoadedModel,
    /// The offer that brought it.
    pub offer: Offer,
    /// Its file.
    pub slot: PathBuf,
}

/// The part of the updater that handles offers (on a blocking thread).
struct Handler {
    cfg: UpdaterConfig,
    ledger: Ledger,
    running: ModelVersion,
    /// The last offer handled, by its bundle hash: a retained offer seen again after a
    /// reconnect is not handled twice.
    last_handled: Option<String>,
    handoff: std::sync::mpsc::Sender<Installed>,
}

impl Handler {
    fn report(
        &self,
        state: ModelState,
        candidate: Option<Candidate>,
        reason: Option<String>,
    ) -> ModelReport {
        ModelReport {
            state,
            active: self.running.clone(),
            // Filled once models switch while running (a rollback needs it).
            previous: None,
            candidate,
            reason,
            since: Utc::now(),
            probation_until: None,
        }
    }

    /// Checks, writes and self-tests one offer message, saying each step to `say`.
    fn handle(&mut self, message: &[u8], say: &mut dyn FnMut(ModelReport)) {
        let policy = Policy {
            trusted: &self.cfg.trusted,
            revoked: &self.cfg.revoked,
            station: &self.cfg.station,
            ledger: &self.ledger,
        };
        say(self.report(ModelState::Verifying, None, None));
        let accepted = match assess(message, &policy, &self.running) {
            Ok(Some(a)) => a,
            Ok(None) => {
                say(self.report(ModelState::Committed, None, None));
                return;
            }
            Err(refused) => {
                tracing::warn!("model update refused: {}", refused.rejection);
                say(self.report(
                    ModelState::Rejected,
                    candidate_of(refused.offer.as_ref(), refused.bundle.as_deref()),
                    Some(refused.rejection.to_string()),
                ));
                return;
            }
        };
        let candidate = candidate_of(Some(&accepted.offer), Some(&accepted.bundle));
        let reject = |this: &Self, why: String| {
            tracing::warn!("model update refused: {why}");
            this.report(ModelState::Rejected, candidate.clone(), Some(why))
        };
        let slot = self
            .cfg
            .slot_dir
            .join(inactive_slot(&self.running, &self.cfg.slot_dir));
        if let Err(e) = crate::station::write_durably(&slot, &accepted.bytes) {
            say(reject(self, format!("writing {}: {e}", slot.display())));
            return;
        }
        say(self.report(ModelState::Testing, candidate.clone(), None));
        let name = format!("{} (offered)", version_of(&accepted.bundle).version);
        let model = match LoadedModel::load(accepted.bundle, &name, &self.cfg.engine) {
            Ok(m) => m,
            Err(e) => {
                say(reject(self, e.to_string()));
                return;
            }
        };
        self.ledger.note(model.bundle(), Some(&accepted.offer));
        let ledger_path = self.cfg.slot_dir.join(LEDGER_FILE);
        if let Err(e) = self.ledger.write(&ledger_path) {
            say(reject(
                self,
                format!("writing {}: {e}", ledger_path.display()),
            ));
            return;
        }
        tracing::info!("model update {} passed its self-test", model.describe());
        let _ = self.handoff.send(Installed {
            model,
            offer: accepted.offer,
            slot,
        });
    }
}

/// `a.warble` or `b.warble`: the slot the running model is not in.
fn inactive_slot(running: &ModelVersion, dir: &std::path::Path) -> &'static str {
    let holds = |name: &str| {
        std::fs::read(dir.join(name))
            .is_ok_and(|b| warble_core::bundle::sha256_hex(&b) == running.sha256)
    };
    if holds("a.warble") {
        "b.warble"
    } else {
        "a.warble"
    }
}

/// The station's model updates.
pub struct Updater {
    handler: Arc<Mutex<Handler>>,
    broker: BrokerConfig,
    group_topic: Option<String>,
}

impl std::fmt::Debug for Updater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Updater")
            .field("topics", &self.broker.topics)
            .field("group_topic", &self.group_topic)
            .finish_non_exhaustive()
    }
}

impl Updater {
    /// An updater for a station running `running`, handing installed models to `handoff`.
    ///
    /// # Errors
    /// The ledger cannot be read (a station must not forget what it installed).
    pub fn new(
        cfg: UpdaterConfig,
        running: ModelVersion,
        handoff: std::sync::mpsc::Sender<Installed>,
    ) -> Result<Self, String> {
        let ledger = Ledger::read(&cfg.slot_dir.join(LEDGER_FILE))?;
        let group_topic = cfg
            .group
            .as_ref()
            .map(|g| cfg.broker.topics.prefix().group_topic(g, Leaf::Bundle))
            .transpose()?;
        Ok(Self {
            broker: cfg.broker.clone(),
            group_topic,
            handler: Arc::new(Mutex::new(Handler {
                cfg,
                ledger,
                running,
                last_handled: None,
                handoff,
            })),
        })
    }

    /// Reads offers and reports until `cancel`. The station's own topic is subscribed
    /// first: the broker sends its retained offer before the group's, and while the
    /// station has an offer of its own, its group's are not taken.
    pub async fn run(self, cancel: CancellationToken) {
        let own = self.broker.topics.topic(Leaf::Bundle);
        let report_topic = self.broker.topics.topic(Leaf::Model);
        let mut backoff = reconnect_backoff();
        let (say_tx, mut say_rx) = tokio::sync::mpsc::unbounded_channel::<ModelReport>();
        let mut own_offer = false;
        while !cancel.is_cancelled() {
            let mut opts = self
                .broker
                .endpoint
                .options(&format!("{}-model", self.broker.client_id));
            opts.set_clean_start(true)
                .set_max_packet_size(Some(MAX_OFFER_BYTES as u32 + 1024));
            let (client, mut eventloop) = AsyncClient::new(opts, 16);
            loop {
                let event = tokio::select! {
                    event = eventloop.poll() => event,
                    Some(report) = say_rx.recv() => {
                        let _ = client.try_publish(&report_topic, QoS::AtLeastOnce, true, report.to_json());
                        continue;
                    }
                    () = cancel.cancelled() => {
                        let _ = client.try_disconnect();
                        return;
                    }
                };
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        backoff.reset();
                        let first = self.lock().report(ModelState::Committed, None, None);
                        let _ = client.try_publish(
                            &report_topic,
                            QoS::AtLeastOnce,
                            true,
                            first.to_json(),
                        );
                        let mut filters = vec![Filter::new(own.clone(), QoS::AtLeastOnce)];
                        filters.extend(
                            self.group_topic
                                .iter()
                                .map(|t| Filter::new(t.clone(), QoS::AtLeastOnce)),
                        );
                        let _ = client.try_subscribe_many(filters);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let topic = String::from_utf8_lossy(&p.topic).into_owned();
                        if topic == own {
                            own_offer = !p.payload.is_empty();
                        } else if own_offer {
                            tracing::info!(
                                "a group offer on {topic} is not taken: the station has an offer of its own"
                            );
                            continue;
                        }
                        if p.payload.is_empty() {
                            continue;
                        }
                        self.take(p.payload.to_vec(), say_tx.clone());
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let wait = backoff.take();
                        tracing::warn!(
                            "model updates: {}; reconnecting in {:.1} s",
                            warble_mqtt::explain(&e, "station", "mqtt.credentials_file"),
                            wait.as_secs_f64()
                        );
                        tokio::select! {
                            () = tokio::time::sleep(wait) => {}
                            () = cancel.cancelled() => return,
                        }
                        break;
                    }
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Handler> {
        self.handler
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Handles `message` on a blocking thread unless it is the offer handled last.
    fn take(&self, message: Vec<u8>, say: tokio::sync::mpsc::UnboundedSender<ModelReport>) {
        let hash = warble_core::bundle::sha256_hex(&message);
        {
            let mut h = self.lock();
            if h.last_handled.as_deref() == Some(hash.as_str()) {
                return;
            }
            h.last_handled = Some(hash);
        }
        let handler = self.handler.clone();
        let received = format!("{} bytes", message.len());
        let _ = say.send(
            self.lock()
                .report(ModelState::Receiving, None, Some(received)),
        );
        tokio::task::spawn_blocking(move || {
            let mut h = handler
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            h.handle(&message, &mut |r| {
                let _ = say.send(r);
            });
        });
    }
}
