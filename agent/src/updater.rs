//! The station's side of model updates over MQTT: it reads the retained offers on its
//! own bundle topic and its group's (its own beats its group's), checks each
//! ([`crate::updates::assess`]), writes what passes to the free slot durably, self-tests
//! it in the engine that will run it, records it in the ledger as on probation and hands
//! it to the recorder; the recorder's verdict ([`crate::probation`]) commits it or rolls
//! it back in the ledger. Every step is reported, retained, on `<prefix>/<station>/model`.
//!
//! The checks and the self-test are CPU work: they run on the updater's own thread
//! (`warble-updates`) while the connection keeps being served; reports come back over a
//! channel.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

use crate::health::Health;
use crate::model::LoadedModel;
use crate::probation::{Outcome, Trial, Verdict};
use crate::publish::BrokerConfig;
use crate::updates::{
    Ledger, Policy, SlotModel, StartNote, assess, candidate_named, candidate_of, version_of,
};

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
    /// Probation unless an offer asks for another length.
    pub probation: Duration,
    /// Where the heartbeat learns the update state.
    pub health: Arc<Health>,
}

/// A model that passed every check and its self-test, written to `slot`: the recorder
/// runs it on `trial`.
#[derive(Debug)]
pub struct Installed {
    /// The model.
    pub model: LoadedModel,
    /// The offer that brought it.
    pub offer: Offer,
    /// Its file.
    pub slot: PathBuf,
    /// Its probation; the verdict goes back to the updater.
    pub trial: Trial,
}

/// The part of the updater that handles offers and verdicts, on its own thread.
struct Handler {
    cfg: UpdaterConfig,
    ledger: Ledger,
    /// The committed model.
    running: ModelVersion,
    /// The committed model before it.
    previous: Option<ModelVersion>,
    /// The model on probation.
    on_trial: Option<ModelVersion>,
    /// An offer that arrived during a probation, handled after it.
    pending: Option<Vec<u8>>,
    /// The last offer handled, by its hash: a retained offer seen again after a
    /// reconnect is not handled twice.
    last_handled: Option<String>,
    handoff: std::sync::mpsc::Sender<Installed>,
    verdicts: tokio::sync::mpsc::UnboundedSender<Verdict>,
}

impl Handler {
    fn report(
        &self,
        state: ModelState,
        candidate: Option<Candidate>,
        reason: Option<String>,
    ) -> ModelReport {
        self.cfg.health.note_model_state(state);
        ModelReport {
            state,
            active: self.running.clone(),
            previous: self.previous.clone(),
            candidate,
            reason,
            since: Utc::now(),
            probation_until: None,
        }
    }

    fn write_ledger(&self) -> Result<(), String> {
        let path = self.cfg.slot_dir.join(LEDGER_FILE);
        self.ledger
            .write(&path)
            .map_err(|e| format!("writing {}: {e}", path.display()))
    }

    /// Checks, writes and self-tests one offer message, saying each step to `say`.
    fn handle(&mut self, message: &[u8], say: &mut dyn FnMut(ModelReport)) {
        let report = self.report(ModelState::Verifying, None, None);
        say(report);
        let policy = Policy {
            trusted: &self.cfg.trusted,
            revoked: &self.cfg.revoked,
            station: &self.cfg.station,
            ledger: &self.ledger,
        };
        let accepted = match assess(message, &policy, &self.running) {
            Ok(Some(a)) => a,
            Ok(None) => {
                let report = self.report(ModelState::Committed, None, None);
                say(report);
                return;
            }
            Err(refused) => {
                tracing::warn!("model update refused: {}", refused.rejection);
                let candidate = candidate_of(refused.offer.as_ref(), refused.bundle.as_deref());
                let report = self.report(
                    ModelState::Rejected,
                    candidate,
                    Some(refused.rejection.to_string()),
                );
                say(report);
                return;
            }
        };
        let candidate = candidate_of(Some(&accepted.offer), Some(&accepted.bundle));
        let reject = |this: &mut Self, why: String| {
            tracing::warn!("model update refused: {why}");
            this.report(ModelState::Rejected, candidate.clone(), Some(why))
        };
        let slot_name = self.ledger.free_slot();
        let slot = self.cfg.slot_dir.join(slot_name);
        if let Err(e) = crate::station::write_durably(&slot, &accepted.bytes) {
            say(reject(self, format!("writing {}: {e}", slot.display())));
            return;
        }
        let report = self.report(ModelState::Testing, candidate.clone(), None);
        say(report);
        let version = version_of(&accepted.bundle);
        let name = format!("{} (offered)", version.version);
        let model = match LoadedModel::load(accepted.bundle, &name, &self.cfg.engine) {
            Ok(m) => m,
            Err(e) => {
                say(reject(self, e.to_string()));
                return;
            }
        };
        // Remembered before it runs: a crash from here on restarts on the committed
        // model, and this offer (or an older one) is not taken again.
        self.ledger.note(model.bundle(), Some(&accepted.offer));
        self.ledger.trial = Some(SlotModel {
            slot: slot_name.to_owned(),
            model: version.clone(),
        });
        if let Err(why) = self.write_ledger() {
            self.ledger.trial = None;
            say(reject(self, why));
            return;
        }
        let length = accepted
            .offer
            .probation_s
            .map_or(self.cfg.probation, Duration::from_secs);
        tracing::info!(
            "model update {} passed its self-test; on probation for {} s of live audio",
            model.describe(),
            length.as_secs()
        );
        self.on_trial = Some(version);
        let mut report = self.report(ModelState::Probation, candidate, None);
        report.probation_until = chrono::Duration::from_std(length)
            .ok()
            .map(|d| report.since + d);
        say(report);
        let _ = self.handoff.send(Installed {
            model,
            offer: accepted.offer,
            slot,
            trial: Trial {
                length,
                verdicts: self.verdicts.clone(),
            },
        });
    }

    /// Ends the probation `verdict` is about: the ledger first (committed: the model
    /// the station starts on; rolled back: forgotten), then the report.
    fn settle(&mut self, verdict: &Verdict) -> Option<ModelReport> {
        let on_trial = self.on_trial.take()?;
        let trial = self.ledger.trial.take();
        let candidate = Some(candidate_named(&on_trial));
        let figures = format!(
            "{:.0} s of live audio, detections in {} of {} windows (the previous model: {})",
            verdict.candidate_figures.audio_s,
            verdict.candidate_figures.detected,
            verdict.candidate_figures.windows,
            verdict.previous_figures.detected
        );
        match &verdict.outcome {
            Outcome::Commit => {
                self.ledger.previous = self.ledger.active.take();
                self.ledger.active = trial;
                let written = self.write_ledger();
                self.previous = Some(std::mem::replace(&mut self.running, on_trial));
                let reason = match written {
                    Ok(()) => format!("committed after probation: {figures}"),
                    Err(e) => {
                        tracing::error!("{e}: the station starts on its previous model next time");
                        format!(
                            "committed after probation ({figures}), but {e}: the station starts on its previous model next time"
                        )
                    }
                };
                Some(self.report(ModelState::Committed, candidate, Some(reason)))
            }
            Outcome::RollBack(why) => {
                self.ledger.rolled_back = Some(on_trial.sha256.clone());
                if let Err(e) = self.write_ledger() {
                    tracing::error!("{e}");
                }
                Some(self.report(
                    ModelState::RolledBack,
                    candidate,
                    Some(format!("{why} ({figures})")),
                ))
            }
        }
    }
}

/// What the updater's thread is asked to do.
enum Command {
    /// An offer message as received.
    Offer(Vec<u8>),
    /// A probation's verdict from the recorder.
    Verdict(Verdict),
}

impl Handler {
    /// The updater's thread: offers and verdicts in order, each to the end (the checks
    /// and the self-test are CPU work that must not stall the network runtime).
    fn serve(
        mut self,
        commands: std::sync::mpsc::Receiver<Command>,
        say: tokio::sync::mpsc::UnboundedSender<ModelReport>,
        last: Arc<Mutex<ModelReport>>,
    ) {
        let mut say = |r: ModelReport| {
            *last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = r.clone();
            let _ = say.send(r);
        };
        while let Ok(command) = commands.recv() {
            let offer = match command {
                Command::Offer(message) => Some(message),
                Command::Verdict(v) => {
                    if let Some(report) = self.settle(&v) {
                        say(report);
                    }
                    self.pending.take()
                }
            };
            let Some(message) = offer else { continue };
            let hash = warble_core::bundle::sha256_hex(&message);
            if self.last_handled.as_deref() == Some(hash.as_str()) {
                continue;
            }
            // Handled once the probation ends: what is "the running model" then is known.
            if self.on_trial.is_some() {
                tracing::info!("a model offer arrived during a probation: it is handled after");
                self.pending = Some(message);
                continue;
            }
            // A retained offer seen again (a reconnect, a restart): nothing to say.
            if let Ok((offer, _)) = Offer::open(&message, &self.cfg.trusted)
                && self.ledger.settled(&offer, &self.running)
            {
                tracing::info!(
                    "the offered bundle {}… is the one running or the one last rolled back: passed over",
                    &offer.sha256[..12.min(offer.sha256.len())]
                );
                self.last_handled = Some(hash);
                continue;
            }
            self.last_handled = Some(hash);
            let received = format!("{} bytes", message.len());
            let report = self.report(ModelState::Receiving, None, Some(received));
            say(report);
            self.handle(&message, &mut say);
        }
    }
}

/// The station's model updates: a connection that reads offers and publishes reports,
/// and a thread (`warble-updates`) that handles them.
pub struct Updater {
    broker: BrokerConfig,
    group_topic: Option<String>,
    commands: std::sync::mpsc::Sender<Command>,
    reports: tokio::sync::mpsc::UnboundedReceiver<ModelReport>,
    verdicts: tokio::sync::mpsc::UnboundedReceiver<Verdict>,
    last: Arc<Mutex<ModelReport>>,
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
    /// An updater for a station running `running` (with the ledger's `start` note, if
    /// the start changed the ledger), handing installed models to `handoff`.
    ///
    /// # Errors
    /// The ledger cannot be read (a station must not forget what it installed), or the
    /// thread cannot be started.
    pub fn new(
        cfg: UpdaterConfig,
        running: ModelVersion,
        start: Option<StartNote>,
        handoff: std::sync::mpsc::Sender<Installed>,
    ) -> Result<Self, String> {
        let mut ledger = Ledger::read(&cfg.slot_dir.join(LEDGER_FILE))?;
        ledger.note_running(&running);
        let group_topic = cfg
            .group
            .as_ref()
            .map(|g| cfg.broker.topics.prefix().group_topic(g, Leaf::Bundle))
            .transpose()?;
        let previous = ledger.previous.as_ref().map(|p| p.model.clone());
        let (verdict_tx, verdicts) = tokio::sync::mpsc::unbounded_channel();
        let broker = cfg.broker.clone();
        let handler = Handler {
            cfg,
            ledger,
            running,
            previous,
            on_trial: None,
            pending: None,
            last_handled: None,
            handoff,
            verdicts: verdict_tx,
        };
        let first = match start {
            Some(note) => handler.report(note.state, Some(note.candidate), Some(note.reason)),
            None => handler.report(ModelState::Committed, None, None),
        };
        let last = Arc::new(Mutex::new(first));
        let (commands, rx) = std::sync::mpsc::channel();
        let (say, reports) = tokio::sync::mpsc::unbounded_channel();
        let shared = last.clone();
        std::thread::Builder::new()
            .name("warble-updates".into())
            .spawn(move || handler.serve(rx, say, shared))
            .map_err(|e| format!("starting the model update thread: {e}"))?;
        Ok(Self {
            broker,
            group_topic,
            commands,
            reports,
            verdicts,
            last,
        })
    }

    /// Reads offers and reports until `cancel`. The station's own topic is subscribed
    /// first: the broker sends its retained offer before the group's, and while the
    /// station has an offer of its own, its group's are not taken.
    pub async fn run(mut self, cancel: CancellationToken) {
        let own = self.broker.topics.topic(Leaf::Bundle);
        let report_topic = self.broker.topics.topic(Leaf::Model);
        let mut backoff = reconnect_backoff();
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
                    Some(report) = self.reports.recv() => {
                        let _ = client.try_publish(&report_topic, QoS::AtLeastOnce, true, report.to_json());
                        continue;
                    }
                    Some(verdict) = self.verdicts.recv() => {
                        let _ = self.commands.send(Command::Verdict(verdict));
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
                        let last = self
                            .last
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .clone();
                        let _ = client.try_publish(
                            &report_topic,
                            QoS::AtLeastOnce,
                            true,
                            last.to_json(),
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
                        if !p.payload.is_empty() {
                            let _ = self.commands.send(Command::Offer(p.payload.to_vec()));
                        }
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
}
