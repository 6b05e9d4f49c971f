//! Staged rollout: a bundle offered to a group's stations in waves, each station on its
//! own bundle topic, while their model reports (`<prefix>/<station>/model`) are watched.
//! A station succeeds when it reports the bundle committed, fails when it reports it
//! rejected or rolled back, or says nothing within the wave's time. Once at least
//! `min_stations` stations have an outcome, a failed share at or above `abort_failed`
//! stops the rollout: the current wave's stations are offered the previous bundle again
//! (forced: it is older) and later waves are not offered anything.
//!
//! The state is saved to a file after every change, so a rollout interrupted (the
//! operator's machine restarted) resumes where it stood: the stations' retained reports
//! say what happened meanwhile.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Filter, Packet};
use rumqttc::v5::{AsyncClient, Event};
use serde::{Deserialize, Serialize};
use warble_core::bundle::offer::MAX_OFFER_BYTES;
use warble_core::wire::{Leaf, ModelReport, ModelState, StationId, TopicPrefix, Topics};
use warble_mqtt::Endpoint;

use crate::push::PushError;

/// The schema of a saved rollout.
pub const ROLLOUT_SCHEMA: &str = "warble.rollout/1";

/// Where one station stands in a rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum StationState {
    /// Not offered yet.
    Waiting,
    /// Offered; no outcome yet.
    Offered {
        /// When.
        at: DateTime<Utc>,
    },
    /// It runs the bundle.
    Committed,
    /// It refused or rolled back the bundle, or said nothing in time.
    Failed {
        /// Its report's reason.
        reason: String,
    },
    /// Offered the previous bundle again after an abort.
    Restoring {
        /// Why it was restored.
        reason: String,
    },
    /// Runs the previous bundle again after an abort.
    Restored {
        /// Why it was restored.
        reason: String,
    },
}

impl StationState {
    fn finished(&self) -> bool {
        matches!(self, Self::Committed | Self::Failed { .. })
    }
}

/// How a rollout ended (or stands).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Status {
    /// Going on (or interrupted: run again to resume).
    Running,
    /// Every wave committed.
    Done,
    /// Stopped at the abort threshold.
    Aborted {
        /// The wave it stopped in (1-based).
        wave: usize,
        /// Why.
        reason: String,
    },
}

/// A rollout's saved state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// Always [`ROLLOUT_SCHEMA`].
    pub schema: String,
    /// The bundle rolled out.
    pub bundle_sha256: String,
    /// What it is (for people).
    pub bundle: String,
    /// The bundle an aborted wave returns to.
    pub previous_sha256: String,
    /// The group.
    pub group: String,
    /// Station ids per wave.
    pub waves: Vec<Vec<String>>,
    /// Where each station stands.
    pub stations: BTreeMap<String, StationState>,
    /// The rollout's state.
    pub status: Status,
}

/// Why a rollout could not go on.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// A setting that cannot be used.
    #[error("{0}")]
    Setting(String),
    /// The state file.
    #[error("{path}: {reason}")]
    State {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The broker.
    #[error("{0}")]
    Push(#[from] PushError),
}

/// Parses wave sizes such as `5%,25%,100%`: cumulative shares of the group, rising, the
/// last 100 %.
///
/// # Errors
/// A share that is not a percentage, not rising, or a last wave below 100 %.
pub fn parse_waves(text: &str) -> Result<Vec<f64>, String> {
    let mut shares = Vec::new();
    for part in text.split(',') {
        let share = parse_percent(part.trim())?;
        if share <= 0.0 || shares.last().is_some_and(|&last| share <= last) {
            return Err(format!(
                "--waves {text}: each wave a larger share of the group than the one before"
            ));
        }
        shares.push(share);
    }
    if shares.last() != Some(&1.0) {
        return Err(format!(
            "--waves {text}: the last wave must be 100% (the whole group)"
        ));
    }
    Ok(shares)
}

/// `10%` → 0.1.
///
/// # Errors
/// Not a percentage from 0 to 100.
pub fn parse_percent(text: &str) -> Result<f64, String> {
    let number = text
        .strip_suffix('%')
        .ok_or_else(|| format!("`{text}` is not a percentage (e.g. 10%)"))?;
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a percentage (e.g. 10%)"))?;
    if !(0.0..=100.0).contains(&value) {
        return Err(format!("`{text}` is not between 0% and 100%"));
    }
    Ok(value / 100.0)
}

/// `90s`, `10m`, `1h` → a duration.
///
/// # Errors
/// Not a number of s, m or h.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let scale = match unit {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("`{text}` is not a duration (e.g. 90s, 10m, 1h)")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (e.g. 90s, 10m, 1h)"))?;
    if !value.is_finite() || value <= 0.0 {
        return Err(format!("`{text}` must be positive"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

/// `stations` (in this order) split into waves of cumulative `shares`: each wave takes
/// the stations up to its share (rounded up) not taken before; an empty wave is skipped.
pub fn plan_waves(stations: &[String], shares: &[f64]) -> Vec<Vec<String>> {
    let mut waves = Vec::new();
    let mut taken = 0;
    for share in shares {
        let upto = ((share * stations.len() as f64).ceil() as usize).min(stations.len());
        if upto > taken {
            waves.push(stations[taken..upto].to_vec());
            taken = upto;
        }
    }
    waves
}

/// When a rollout stops.
#[derive(Debug, Clone, Copy)]
pub struct AbortRule {
    /// The failed share of the stations with an outcome at which it stops.
    pub failed_share: f64,
    /// Stations with an outcome before the share counts.
    pub min_stations: usize,
}

impl AbortRule {
    /// `Some(reason)` when the rollout must stop.
    pub fn reached(&self, finished: usize, failed: usize) -> Option<String> {
        if failed == 0 || finished < self.min_stations {
            return None;
        }
        let share = failed as f64 / finished as f64;
        (share >= self.failed_share).then(|| {
            format!(
                "{failed} of {finished} stations failed ({:.0} %, the limit is {:.0} %)",
                100.0 * share,
                100.0 * self.failed_share
            )
        })
    }
}

/// What a station's report says about `sha256`: committed, failed, or nothing yet.
pub fn outcome_of(report: &ModelReport, sha256: &str) -> Option<StationState> {
    let about = report
        .candidate
        .as_ref()
        .is_some_and(|c| c.sha256 == sha256);
    match report.state {
        ModelState::Committed if report.active.sha256 == sha256 => Some(StationState::Committed),
        ModelState::Rejected | ModelState::RolledBack if about => Some(StationState::Failed {
            reason: format!(
                "{}: {}",
                if report.state == ModelState::Rejected {
                    "rejected"
                } else {
                    "rolled back"
                },
                // One line: it goes into a table.
                report
                    .reason
                    .as_deref()
                    .unwrap_or("no reason given")
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        }),
        _ => None,
    }
}

impl Rollout {
    /// A new rollout of `waves`.
    pub fn new(
        bundle_sha256: String,
        bundle: String,
        previous_sha256: String,
        group: String,
        waves: Vec<Vec<String>>,
    ) -> Self {
        let stations = waves
            .iter()
            .flatten()
            .map(|s| (s.clone(), StationState::Waiting))
            .collect();
        Self {
            schema: ROLLOUT_SCHEMA.to_owned(),
            bundle_sha256,
            bundle,
            previous_sha256,
            group,
            waves,
            stations,
            status: Status::Running,
        }
    }

    /// Reads a saved rollout, if the file exists.
    ///
    /// # Errors
    /// An unreadable or foreign file.
    pub fn read(path: &Path) -> Result<Option<Self>, RolloutError> {
        let err = |reason: String| RolloutError::State {
            path: path.display().to_string(),
            reason,
        };
        match std::fs::read(path) {
            Ok(bytes) => {
                let r: Self = serde_json::from_slice(&bytes)
                    .map_err(|e| err(format!("not a saved rollout: {e}")))?;
                if r.schema != ROLLOUT_SCHEMA {
                    return Err(err(format!("schema `{}`", r.schema)));
                }
                Ok(Some(r))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(err(e.to_string())),
        }
    }

    /// Saves it (whole, or the previous file stays).
    ///
    /// # Errors
    /// The I/O error.
    pub fn save(&self, path: &Path) -> Result<(), RolloutError> {
        let err = |reason: String| RolloutError::State {
            path: path.display().to_string(),
            reason,
        };
        let text = serde_json::to_vec_pretty(self).map_err(|e| err(e.to_string()))?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text).map_err(|e| err(e.to_string()))?;
        std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))
    }

    fn counts(&self) -> (usize, usize) {
        let finished = self.stations.values().filter(|s| s.finished()).count();
        let failed = self
            .stations
            .values()
            .filter(|s| matches!(s, StationState::Failed { .. }))
            .count();
        (finished, failed)
    }

    /// The first wave with a station not finished (the current one), 0-based.
    fn current_wave(&self) -> Option<usize> {
        self.waves.iter().position(|w| {
            w.iter()
                .any(|s| !self.stations.get(s).is_some_and(StationState::finished))
        })
    }
}

/// What a rollout sends and how long it waits.
pub struct RolloutConfig {
    /// The broker.
    pub endpoint: Endpoint,
    /// MQTT client id.
    pub client_id: String,
    /// Stations' topic prefix.
    pub prefix: TopicPrefix,
    /// The offer of the new bundle.
    pub offer: Vec<u8>,
    /// Makes the (forced) offer of the previous bundle, issued when it is sent: a
    /// station refuses an offer not issued after the last one it took.
    pub previous_offer: Box<dyn Fn() -> Result<Vec<u8>, PushError>>,
    /// When to stop.
    pub abort: AbortRule,
    /// How long a wave's stations have to report an outcome.
    pub wave_timeout: Duration,
    /// Where the state is saved.
    pub state_path: std::path::PathBuf,
}

impl std::fmt::Debug for RolloutConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RolloutConfig")
            .field("client_id", &self.client_id)
            .field("prefix", &self.prefix)
            .field("abort", &self.abort)
            .field("wave_timeout", &self.wave_timeout)
            .field("state_path", &self.state_path)
            .finish_non_exhaustive()
    }
}

/// What a rollout shows as it goes.
pub trait Progress {
    /// Wave `wave` (0-based) of `waves` starts with `stations`.
    fn wave(&mut self, wave: usize, waves: usize, stations: usize);
    /// A station has an outcome (or changed state).
    fn station(&mut self, id: &str, state: &StationState);
    /// The wave ended.
    fn wave_done(&mut self);
}

/// Runs (or resumes) `rollout` until it is done or aborted, saving it at every change.
///
/// # Errors
/// [`RolloutError`]: the broker, the state file.
pub async fn run(
    cfg: &RolloutConfig,
    rollout: &mut Rollout,
    progress: &mut dyn Progress,
) -> Result<(), RolloutError> {
    let mut opts = cfg.endpoint.options(&cfg.client_id);
    opts.set_clean_start(true)
        .set_max_packet_size(Some(MAX_OFFER_BYTES as u32 + 1024));
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    let reports_filter = format!("{}/+/{}", cfg.prefix.as_str(), Leaf::Model);
    let broker = |e: String| RolloutError::Push(PushError::Broker(e));
    let mut reports: BTreeMap<String, ModelReport> = BTreeMap::new();
    // Connect and subscribe before anything is offered: the retained reports say where
    // each station stands (after an interruption, what happened meanwhile).
    let connect_by = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let event = tokio::time::timeout_at(connect_by, eventloop.poll())
            .await
            .map_err(|_| broker("no connection within 30 s".into()))?
            .map_err(|e| broker(warble_mqtt::explain(&e, "operator", "--credentials-file")))?;
        match event {
            Event::Incoming(Packet::ConnAck(_)) => {
                client
                    .subscribe_many([Filter::new(reports_filter.clone(), QoS::AtLeastOnce)])
                    .await
                    .map_err(|e| broker(e.to_string()))?;
            }
            Event::Incoming(Packet::SubAck(_)) => break,
            _ => {}
        }
    }
    let station_topic = |id: &str, leaf: Leaf| -> Result<String, RolloutError> {
        let station = StationId::new(id)
            .map_err(|e| RolloutError::Setting(format!("station `{id}`: {e}")))?;
        Ok(Topics::new(cfg.prefix.clone(), station).topic(leaf))
    };
    let waves = rollout.waves.len();
    while let Some(w) = rollout.current_wave() {
        if rollout.status != Status::Running {
            break;
        }
        let members = rollout.waves[w].clone();
        progress.wave(w, waves, members.len());
        for id in &members {
            if rollout.stations.get(id) == Some(&StationState::Waiting) {
                client
                    .publish(
                        station_topic(id, Leaf::Bundle)?,
                        QoS::AtLeastOnce,
                        true,
                        cfg.offer.clone(),
                    )
                    .await
                    .map_err(|e| broker(e.to_string()))?;
                rollout
                    .stations
                    .insert(id.clone(), StationState::Offered { at: Utc::now() });
                rollout.save(&cfg.state_path)?;
            } else if let Some(s) = rollout.stations.get(id) {
                progress.station(id, s);
            }
        }
        let deadline = tokio::time::Instant::now() + cfg.wave_timeout;
        // Outcomes as reports arrive, until the wave is finished or the time is up.
        loop {
            for id in &members {
                let offered =
                    matches!(rollout.stations.get(id), Some(StationState::Offered { .. }));
                if let (true, Some(r)) = (offered, reports.get(id))
                    && let Some(outcome) = outcome_of(r, &rollout.bundle_sha256)
                {
                    progress.station(id, &outcome);
                    rollout.stations.insert(id.clone(), outcome);
                    rollout.save(&cfg.state_path)?;
                }
            }
            let (finished, failed) = rollout.counts();
            if let Some(reason) = cfg.abort.reached(finished, failed) {
                rollout.status = Status::Aborted {
                    wave: w + 1,
                    reason,
                };
                break;
            }
            if members
                .iter()
                .all(|id| rollout.stations.get(id).is_some_and(StationState::finished))
            {
                break;
            }
            let event = match tokio::time::timeout_at(deadline, eventloop.poll()).await {
                Err(_) => {
                    for id in &members {
                        if matches!(rollout.stations.get(id), Some(StationState::Offered { .. })) {
                            let failed = StationState::Failed {
                                reason: format!(
                                    "no outcome reported within {} s",
                                    cfg.wave_timeout.as_secs()
                                ),
                            };
                            progress.station(id, &failed);
                            rollout.stations.insert(id.clone(), failed);
                        }
                    }
                    rollout.save(&cfg.state_path)?;
                    continue;
                }
                Ok(event) => event.map_err(|e| broker(e.to_string()))?,
            };
            if let Event::Incoming(Packet::Publish(p)) = event {
                let topic = String::from_utf8_lossy(&p.topic).into_owned();
                let station = topic.split('/').rev().nth(1).unwrap_or_default().to_owned();
                if let Ok(report) = serde_json::from_slice::<ModelReport>(&p.payload) {
                    reports.insert(station, report);
                }
            }
        }
        progress.wave_done();
        rollout.save(&cfg.state_path)?;
        if let Status::Aborted { reason, .. } = rollout.status.clone() {
            restore(
                cfg,
                rollout,
                &members,
                &reason,
                &client,
                &mut eventloop,
                &mut reports,
                progress,
            )
            .await?;
            return Ok(());
        }
    }
    if rollout.status == Status::Running {
        rollout.status = Status::Done;
        rollout.save(&cfg.state_path)?;
    }
    let _ = client.disconnect().await;
    Ok(())
}

/// Offers the previous bundle again to the stations of the aborted wave that took the
/// new one (or had not said yet), and waits for them to run it.
#[allow(clippy::too_many_arguments, reason = "one caller, the rollout loop")]
async fn restore(
    cfg: &RolloutConfig,
    rollout: &mut Rollout,
    members: &[String],
    reason: &str,
    client: &AsyncClient,
    eventloop: &mut rumqttc::v5::EventLoop,
    reports: &mut BTreeMap<String, ModelReport>,
    progress: &mut dyn Progress,
) -> Result<(), RolloutError> {
    let broker = |e: String| RolloutError::Push(PushError::Broker(e));
    let mut restoring = Vec::new();
    for id in members {
        let took = matches!(
            rollout.stations.get(id),
            Some(StationState::Committed | StationState::Offered { .. })
        );
        if !took {
            continue;
        }
        let station = StationId::new(id)
            .map_err(|e| RolloutError::Setting(format!("station `{id}`: {e}")))?;
        let topic = Topics::new(cfg.prefix.clone(), station).topic(Leaf::Bundle);
        client
            .publish(topic, QoS::AtLeastOnce, true, (cfg.previous_offer)()?)
            .await
            .map_err(|e| broker(e.to_string()))?;
        let state = StationState::Restoring {
            reason: reason.to_owned(),
        };
        progress.station(id, &state);
        rollout.stations.insert(id.clone(), state);
        restoring.push(id.clone());
    }
    rollout.save(&cfg.state_path)?;
    let deadline = tokio::time::Instant::now() + cfg.wave_timeout;
    while !restoring.is_empty() {
        restoring.retain(|id| {
            let back = reports.get(id).is_some_and(|r| {
                r.state == ModelState::Committed && r.active.sha256 == rollout.previous_sha256
            });
            if back {
                let state = StationState::Restored {
                    reason: reason.to_owned(),
                };
                progress.station(id, &state);
                rollout.stations.insert(id.clone(), state);
            }
            !back
        });
        if restoring.is_empty() {
            break;
        }
        let Ok(event) = tokio::time::timeout_at(deadline, eventloop.poll()).await else {
            break;
        };
        if let Event::Incoming(Packet::Publish(p)) = event.map_err(|e| broker(e.to_string()))? {
            let topic = String::from_utf8_lossy(&p.topic).into_owned();
            let station = topic.split('/').rev().nth(1).unwrap_or_default().to_owned();
            if let Ok(report) = serde_json::from_slice::<ModelReport>(&p.payload) {
                reports.insert(station, report);
            }
        }
    }
    rollout.save(&cfg.state_path)?;
    let _ = client.disconnect().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waves_take_cumulative_shares_rounded_up() {
        let ids: Vec<String> = (0..20).map(|i| format!("s{i:02}")).collect();
        let waves = plan_waves(&ids, &parse_waves("5%,25%,100%").unwrap());
        let sizes: Vec<usize> = waves.iter().map(Vec::len).collect();
        assert_eq!(sizes, [1, 4, 15]);
        assert_eq!(waves.concat(), ids);
        // Three stations: 5 % rounds up to one; an empty wave is skipped.
        let small = plan_waves(&ids[..3], &parse_waves("5%,10%,100%").unwrap());
        assert_eq!(small.iter().map(Vec::len).collect::<Vec<_>>(), [1, 2]);
        assert!(parse_waves("25%,5%,100%").is_err());
        assert!(parse_waves("5%,50%").is_err());
        assert!(parse_waves("5,100%").is_err());
    }

    #[test]
    fn the_abort_rule_needs_its_minimum_before_the_share_counts() {
        let rule = AbortRule {
            failed_share: 0.10,
            min_stations: 3,
        };
        assert_eq!(rule.reached(2, 2), None, "too few outcomes yet");
        assert!(
            rule.reached(3, 1)
                .unwrap()
                .contains("1 of 3 stations failed")
        );
        assert_eq!(rule.reached(20, 1), None, "5 % < 10 %");
        assert!(rule.reached(20, 2).is_some());
        assert_eq!(rule.reached(5, 0), None);
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("10").is_err());
        assert!(parse_percent("150%").is_err());
    }

    #[test]
    fn a_report_tells_the_outcome_for_its_bundle_only() {
        use warble_core::wire::{Candidate, ModelVersion};
        let version = |sha: &str| ModelVersion {
            id: "m".into(),
            version: "1".into(),
            sha256: sha.into(),
        };
        let mut r = ModelReport {
            state: ModelState::Probation,
            active: version("old"),
            previous: None,
            candidate: Some(Candidate {
                sha256: "new".into(),
                id: None,
                version: None,
            }),
            reason: None,
            since: Utc::now(),
            probation_until: None,
        };
        assert_eq!(outcome_of(&r, "new"), None);
        r.state = ModelState::RolledBack;
        r.reason = Some("NaN".into());
        assert_eq!(
            outcome_of(&r, "new"),
            Some(StationState::Failed {
                reason: "rolled back: NaN".into()
            })
        );
        assert_eq!(outcome_of(&r, "other"), None);
        r.state = ModelState::Committed;
        r.active = version("new");
        assert_eq!(outcome_of(&r, "new"), Some(StationState::Committed));
    }
}
