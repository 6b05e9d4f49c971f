//! Model updates on the station: which offered bundles it takes, and what it remembers
//! about models across restarts.
//!
//! An offer ([`warble_core::bundle::offer`]) passes, in order: the offer's own checks
//! (size, header, a trusted and not revoked key, the bundle's hash), the bundle's
//! verification (its signature, hashes, manifest, labels), the downgrade rules (a model
//! version not above the highest this station installed of that model, or an offer not
//! issued after the last one it took, is refused unless it is forced — and a forced one
//! must still be newer than the last offer taken, so an old forced offer published again
//! is refused), and its fit to this station (capture rate, agent version, every species
//! code the station file names). What passes is written to the inactive slot and
//! self-tested before it runs.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use warble_config::StationConfig;
use warble_core::bundle::offer::{Offer, OfferError};
use warble_core::bundle::{Bundle, BundleError, Limits, TrustedKeys};
use warble_core::wire::{Candidate, ModelVersion};

/// Why an offered bundle was not taken. Its text is the report's `reason`.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    /// The offer message itself: size, header, key, signature, hash.
    #[error("{0}")]
    Offer(#[from] OfferError),
    /// The offer is signed by a key the station file lists as revoked.
    #[error("offer signed by key {0}, which this station lists as revoked")]
    RevokedKey(String),
    /// The bundle does not verify.
    #[error("the bundle does not verify: {0}")]
    Bundle(#[from] BundleError),
    /// The bundle is signed by a revoked key.
    #[error("the bundle is signed by key {0}, which this station lists as revoked")]
    RevokedBundleKey(String),
    /// Not above the highest version of the model this station installed.
    #[error(
        "{id} {version} is not newer than {highest}, the highest version this station installed (push with --force to install it anyway)"
    )]
    NotNewer {
        /// Model id.
        id: String,
        /// Offered version.
        version: String,
        /// Highest installed.
        highest: String,
    },
    /// Issued no later than the last offer taken: an old offer published again.
    #[error(
        "the offer was issued {issued}, not after the last offer this station took ({last}): an old offer published again is refused"
    )]
    StaleOffer {
        /// The offer's issue time.
        issued: DateTime<Utc>,
        /// The last offer taken.
        last: DateTime<Utc>,
    },
    /// The model does not fit this station.
    #[error("incompatible with this station: {0}")]
    Incompatible(String),
}

/// What the station remembers about models across restarts (`<slot_dir>/state.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    /// The highest version installed of each model id, `[major, minor, patch]`.
    #[serde(default)]
    pub highest: BTreeMap<String, [u64; 3]>,
    /// The issue time of the last offer taken.
    #[serde(default)]
    pub last_offer: Option<DateTime<Utc>>,
    /// The committed model the station starts on (`None`: `model.bundle` of the station
    /// file).
    #[serde(default)]
    pub active: Option<SlotModel>,
    /// The committed model before it (`None`: `model.bundle`), for a rollback by hand.
    #[serde(default)]
    pub previous: Option<SlotModel>,
    /// A model on probation. A station that restarts with one here abandons it and starts
    /// on `active`: a model that has not proved itself never becomes the one that boots.
    #[serde(default)]
    pub trial: Option<SlotModel>,
    /// SHA-256 of the last bundle rolled back (or abandoned on probation): its retained
    /// offer, seen again, is passed over without a report, so the station's report keeps
    /// saying why it went back (an operator retries it with a new, forced push).
    #[serde(default)]
    pub rolled_back: Option<String>,
    /// SHA-256 of the station file's `model.bundle` when the station last started: a
    /// different one means a technician put a new model there, and the station runs it.
    #[serde(default)]
    pub configured: Option<String>,
}

/// A model in one of the two slots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotModel {
    /// The slot's file name in the slot folder (`a.warble` or `b.warble`).
    pub slot: String,
    /// The model it holds.
    pub model: ModelVersion,
}

/// The two slots.
pub const SLOTS: [&str; 2] = ["a.warble", "b.warble"];

/// The model a station starts on, from its ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct Start {
    /// The bundle file to run.
    pub bundle: std::path::PathBuf,
    /// What happened to the ledger's models on the way (said in the first report).
    pub note: Option<StartNote>,
}

/// A change the start made: a probation abandoned, or a committed slot that cannot be
/// used.
#[derive(Debug, Clone, PartialEq)]
pub struct StartNote {
    /// `rolled_back`.
    pub state: warble_core::wire::ModelState,
    /// The model concerned.
    pub candidate: Candidate,
    /// Why.
    pub reason: String,
}

impl Ledger {
    /// Whether `offer` needs no handling: the bundle the station runs, or the one it last
    /// rolled back unless a newer forced offer asks for it again.
    pub fn settled(&self, offer: &Offer, running: &ModelVersion) -> bool {
        let seen = self.last_offer.is_some_and(|last| offer.issued <= last);
        offer.sha256 == running.sha256
            || (self.rolled_back.as_deref() == Some(offer.sha256.as_str())
                && (!offer.force || seen))
    }

    /// Forgets the committed slot model (it no longer loads): the station runs
    /// `model.bundle` until the next update. Returns what it was.
    ///
    /// # Errors
    /// The ledger cannot be read or written.
    pub fn forget_active(slot_dir: &Path) -> Result<Option<SlotModel>, String> {
        let path = slot_dir.join(crate::updater::LEDGER_FILE);
        let mut ledger = Self::read(&path)?;
        let active = ledger.active.take();
        ledger
            .write(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(active)
    }

    /// The slot a new model goes to: the one the committed model is not in.
    pub fn free_slot(&self) -> &'static str {
        match &self.active {
            Some(a) if a.slot == SLOTS[0] => SLOTS[1],
            _ => SLOTS[0],
        }
    }

    /// Decides the model to start on and writes the ledger if that changed it: a model
    /// left on probation is abandoned (the agent stopped or crashed during its trial), and
    /// a committed slot whose file no longer matches its hash is dropped for
    /// `configured` (the station file's `model.bundle`).
    ///
    /// # Errors
    /// The ledger cannot be read or written.
    pub fn start(slot_dir: &Path, configured: &Path) -> Result<Start, String> {
        let path = slot_dir.join(crate::updater::LEDGER_FILE);
        let mut ledger = Self::read(&path)?;
        let mut note = None;
        if let Some(trial) = ledger.trial.take() {
            ledger.rolled_back = Some(trial.model.sha256.clone());
            note = Some(StartNote {
                state: warble_core::wire::ModelState::RolledBack,
                candidate: candidate_named(&trial.model),
                reason: format!(
                    "the agent stopped while {} {} was on probation: it starts on the previous model",
                    trial.model.id, trial.model.version
                ),
            });
        }
        let mut bundle = configured.to_path_buf();
        let configured_sha = std::fs::read(configured)
            .ok()
            .map(|b| warble_core::bundle::sha256_hex(&b));
        let replaced = ledger.configured.is_some() && ledger.configured != configured_sha;
        if replaced && let Some(active) = ledger.active.take() {
            note = Some(StartNote {
                state: warble_core::wire::ModelState::RolledBack,
                candidate: candidate_named(&active.model),
                reason: format!(
                    "model.bundle ({}) changed since the last start: the station runs it instead of the update {} {}",
                    configured.display(),
                    active.model.id,
                    active.model.version
                ),
            });
        }
        let configured_changed = ledger.configured != configured_sha;
        ledger.configured = configured_sha;
        if let Some(active) = ledger.active.clone() {
            let file = slot_dir.join(&active.slot);
            let holds = std::fs::read(&file)
                .is_ok_and(|b| warble_core::bundle::sha256_hex(&b) == active.model.sha256);
            if holds {
                bundle = file;
            } else {
                note = Some(StartNote {
                    state: warble_core::wire::ModelState::RolledBack,
                    candidate: candidate_named(&active.model),
                    reason: format!(
                        "{} no longer holds {} {} (missing or damaged): the station runs model.bundle",
                        file.display(),
                        active.model.id,
                        active.model.version
                    ),
                });
                ledger.active = None;
            }
        }
        if note.is_some() || configured_changed {
            ledger
                .write(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(Start { bundle, note })
    }
}

impl Ledger {
    /// Reads the ledger at `path` (empty when there is none yet).
    ///
    /// # Errors
    /// An unreadable or corrupt file, named: the station must not forget what it
    /// installed (that would let an old bundle back in).
    pub fn read(path: &Path) -> Result<Self, String> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("{}: not a model ledger: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Writes it to `path` durably: whole or not at all, across a power cut.
    ///
    /// # Errors
    /// The I/O error.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        crate::station::write_durably(path, &bytes)
    }

    /// Counts the model a station runs as installed: an update to a version below the
    /// one it runs from its station file is a downgrade too. A version that is not
    /// `major.minor.patch` (a bundle's is checked when it is read) is not counted.
    pub fn note_running(&mut self, running: &ModelVersion) {
        let core = running.version.split(['-', '+']).next().unwrap_or_default();
        let parts: Vec<u64> = core.split('.').filter_map(|p| p.parse().ok()).collect();
        if let [a, b, c] = parts[..] {
            let highest = self.highest.entry(running.id.clone()).or_default();
            *highest = (*highest).max([a, b, c]);
        }
    }

    /// Notes a model installed (and the offer that brought it, if any).
    pub fn note(&mut self, bundle: &Bundle, offer: Option<&Offer>) {
        let m = bundle.manifest();
        let (a, b, c) = m.version_triple();
        let highest = self.highest.entry(m.model_id.clone()).or_default();
        *highest = (*highest).max([a, b, c]);
        if let Some(o) = offer {
            self.last_offer = self.last_offer.max(Some(o.issued));
        }
    }
}

/// What an offer is checked against.
#[derive(Debug)]
pub struct Policy<'a> {
    /// Keys that may sign offers and bundles.
    pub trusted: &'a TrustedKeys,
    /// Key ids refused even if trusted.
    pub revoked: &'a [String],
    /// The station's settings (capture rate, species codes).
    pub station: &'a StationConfig,
    /// What the station remembers.
    pub ledger: &'a Ledger,
}

/// An offer refused, with what the report can name of it: the offer once its header
/// verified, the bundle once it verified.
#[derive(Debug)]
pub struct Refused {
    /// Why.
    pub rejection: Rejection,
    /// The offer, if its header verified.
    pub offer: Option<Offer>,
    /// The bundle, if it verified.
    pub bundle: Option<Box<Bundle>>,
}

/// An offer that passed every check before its self-test.
#[derive(Debug)]
pub struct Accepted {
    /// The offer.
    pub offer: Offer,
    /// The verified bundle.
    pub bundle: Bundle,
    /// Its bytes, as they go to the slot.
    pub bytes: Vec<u8>,
}

/// The offered bundle as a report names it, from what is known of `message` so far.
pub fn candidate_of(offer: Option<&Offer>, bundle: Option<&Bundle>) -> Option<Candidate> {
    let sha256 = offer.map(|o| o.sha256.clone())?;
    Some(Candidate {
        sha256,
        id: bundle.map(|b| b.manifest().model_id.clone()),
        version: bundle.map(|b| b.manifest().version.clone()),
    })
}

/// A model as the report's `candidate` names it.
pub fn candidate_named(v: &ModelVersion) -> Candidate {
    Candidate {
        sha256: v.sha256.clone(),
        id: Some(v.id.clone()),
        version: Some(v.version.clone()),
    }
}

/// The model a report names.
pub fn version_of(bundle: &Bundle) -> ModelVersion {
    let m = bundle.manifest();
    ModelVersion {
        id: m.model_id.clone(),
        version: m.version.clone(),
        sha256: bundle.sha256().to_owned(),
    }
}

/// Checks `message` (an offer as received) against `policy`. `Ok(None)`: the bundle is
/// the one `running` already (a retained offer seen again on reconnecting).
///
/// # Errors
/// The first [`Rejection`], as [`Refused`].
pub fn assess(
    message: &[u8],
    policy: &Policy<'_>,
    running: &ModelVersion,
) -> Result<Option<Accepted>, Box<Refused>> {
    let (offer, bytes) = Offer::open(message, policy.trusted).map_err(|e| {
        Box::new(Refused {
            rejection: e.into(),
            offer: None,
            bundle: None,
        })
    })?;
    let fail = |rejection: Rejection, b: Option<Bundle>| {
        Box::new(Refused {
            rejection,
            offer: Some(offer.clone()),
            bundle: b.map(Box::new),
        })
    };
    if policy.revoked.contains(&offer.key_id) {
        return Err(fail(Rejection::RevokedKey(offer.key_id.clone()), None));
    }
    if offer.sha256 == running.sha256 {
        return Ok(None);
    }
    let bundle = Bundle::from_bytes(bytes, policy.trusted, &Limits::default())
        .map_err(|e| fail(e.into(), None))?;
    if policy
        .revoked
        .iter()
        .any(|k| k == bundle.signed_by().as_str())
    {
        let id = bundle.signed_by().to_string();
        return Err(fail(Rejection::RevokedBundleKey(id), Some(bundle)));
    }
    if let Some(last) = policy.ledger.last_offer
        && offer.issued <= last
    {
        let stale = Rejection::StaleOffer {
            issued: offer.issued,
            last,
        };
        return Err(fail(stale, Some(bundle)));
    }
    let m = bundle.manifest();
    let (a, b, c) = m.version_triple();
    if let Some(highest) = policy.ledger.highest.get(&m.model_id)
        && [a, b, c] <= *highest
        && !offer.force
    {
        let not_newer = Rejection::NotNewer {
            id: m.model_id.clone(),
            version: m.version.clone(),
            highest: highest.map(|n| n.to_string()).join("."),
        };
        return Err(fail(not_newer, Some(bundle)));
    }
    if let Err(why) = fits(&bundle, policy.station) {
        return Err(fail(Rejection::Incompatible(why), Some(bundle)));
    }
    Ok(Some(Accepted {
        offer: offer.clone(),
        bundle,
        bytes: bytes.to_vec(),
    }))
}

/// Whether `bundle` can run on `station`: audio at least at the model's rate (a model
/// that needs 48 kHz hears nothing above 16 kHz from a 32-kHz capture), an agent at
/// least as new as the model asks, and every species code the station file names.
fn fits(bundle: &Bundle, station: &StationConfig) -> Result<(), String> {
    let m = bundle.manifest();
    let rate = match &m.input {
        warble_core::bundle::InputSpec::Logmel { frontend, .. } => frontend.sample_rate_hz,
        warble_core::bundle::InputSpec::Waveform { sample_rate_hz, .. } => *sample_rate_hz,
    };
    if rate > station.sample_rate_hz {
        return Err(format!(
            "{} {} needs audio at {rate} Hz; this station captures at {} Hz (audio.sample_rate_hz)",
            m.model_id, m.version, station.sample_rate_hz
        ));
    }
    let describe = format!("{} {}, {} classes", m.model_id, m.version, m.num_classes);
    crate::species::check(station, bundle.labels(), &describe).map_err(|e| e.to_string())
}
