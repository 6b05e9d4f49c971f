//! Delivery of the outbox to an MQTT broker: MQTT 5, QoS 1, and an event leaves the
//! outbox only when the broker's PUBACK for it has arrived *and says it was accepted*.
//! (MQTT 3.1.1 has no negative acknowledgement: a broker acknowledges a publish its ACL
//! denies all the same, and a wrong prefix or ACL emptied the outbox into the void. MQTT
//! 5's PUBACK carries a reason code; "not authorised" stops delivery, keeps the event and
//! says why: see [`DeliveryError::Refused`].)
//!
//! How a PUBACK finds its event: rumqttc hands out packet ids itself and reports each
//! sent publish as `Outgoing::Publish(pkid)` in the order the publishes were requested
//! (a packet-id collision holds the queue, so the order is kept). The loop remembers the
//! order of its requests, pairs each reported pkid with the next one, and acks that outbox
//! row when `PubAck(pkid)` comes in. A new connection starts a fresh client, so nothing
//! sent on the old one can be paired wrongly; what was in flight is simply sent again
//! (subscribers de-duplicate on the event id).
//!
//! rumqttc has no backoff of its own: after an error the loop waits 0.5 s doubling to
//! 30 s, each wait shortened by a random 0–50 % (jitter, so a fleet does not reconnect in
//! step), and never past the deadline. Everything queued while the broker is away is
//! marked historical.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::time::Duration;

use rumqttc::Outgoing;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet};
use rumqttc::v5::{AsyncClient, Event};
use tokio::time::Instant;

use warble_core::backoff::Backoff;
use warble_core::wire::{Leaf, Topics};
use warble_mqtt::{Endpoint, SetupError, explain, puback_refusal, reconnect_backoff};

use crate::outbox::{Outbox, OutboxError};

/// Where and how to deliver.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// The broker, with the station's login and TLS.
    pub endpoint: Endpoint,
    /// MQTT client id (stable per station: the broker keeps its session).
    pub client_id: String,
    /// The station's topics (`<prefix>/<station>/<leaf>`).
    pub topics: Topics,
    /// Events in flight at once.
    pub window: usize,
    /// Home Assistant MQTT discovery with the presence, under this device name
    /// (`station.name`, else `Warble <id>`); `None`: no discovery configs.
    pub ha_device: Option<String>,
}

impl BrokerConfig {
    /// From a validated station file; reads the TLS and credentials files (named
    /// relative to `base`).
    ///
    /// # Errors
    /// No `[mqtt]` section, a TLS or credentials file that cannot be used, or a broker
    /// user that is not the station id.
    pub fn from_station(
        st: &warble_config::StationConfig,
        base: &std::path::Path,
    ) -> Result<Self, DeliveryError> {
        let Some(m) = &st.mqtt else {
            return Err(DeliveryError::NotConfigured);
        };
        let ca = m.ca_file.as_ref().map(|f| base.join(f));
        let identity = m
            .client_identity
            .as_ref()
            .map(|(c, k)| (base.join(c), base.join(k)));
        let credentials = m.credentials_file.as_ref().map(|f| base.join(f));
        let endpoint = Endpoint::with_files(
            &m.host,
            m.port,
            m.tls,
            credentials.as_deref(),
            ca.as_deref(),
            identity.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
        )?;
        // The fleet's ACL lets a station publish only under its own id: a mismatch is
        // refused here, before any event is sent to be denied.
        if let (Some(path), Some((user, _))) = (credentials, &endpoint.credentials)
            && user != st.id.as_str()
        {
            return Err(SetupError::Credentials {
                path,
                reason: format!(
                    "the user `{}` is not the station id `{}`: stations log in to the broker with their id (the broker's ACL lets nobody else publish the station's detections)",
                    user.escape_debug(),
                    st.id
                ),
            }
            .into());
        }
        Ok(Self {
            endpoint,
            client_id: m.client_id.clone(),
            topics: Topics::new(m.topic_prefix.clone(), st.id.clone()),
            window: 32,
            ha_device: m.ha_discovery.then(|| {
                st.name
                    .clone()
                    .unwrap_or_else(|| format!("Warble {}", st.id))
            }),
        })
    }
}

/// Why delivery stopped.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The station file has no `[mqtt]` section.
    #[error("the station file has no [mqtt] section: detections stay local")]
    NotConfigured,
    /// A TLS or credentials file cannot be used.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The broker acknowledged a publish with a refusal that retrying cannot cure (its ACL
    /// does not let this station publish there, or the topic is invalid): delivery stops
    /// and every event stays in the outbox until the configuration is put right.
    #[error(
        "the broker refused the station's detections on `{topic}` ({reason}): check \
         mqtt.topic_prefix and the broker's ACL for this station (a station publishes under \
         <prefix>/<its id>/); {kept} event(s) kept in the outbox"
    )]
    Refused {
        /// The topic published to.
        topic: String,
        /// The broker's reason, in words.
        reason: &'static str,
        /// Events still in the outbox.
        kept: u64,
    },
    /// The outbox failed (disk full, corrupt file…): nothing was acknowledged wrongly.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}

/// What a [`drain`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DrainReport {
    /// Events acknowledged by the broker and removed from the outbox.
    pub delivered: u64,
    /// Events still in the outbox.
    pub pending: u64,
    /// Connections made.
    pub connections: u32,
    /// The last connection problem, if any.
    pub last_error: Option<String>,
}

/// How a session ended.
pub(crate) enum SessionEnd {
    /// Nothing left to send (and, running, a stop was asked for).
    Drained,
    /// The connection failed or was refused: why.
    Failed(String),
    /// The deadline passed.
    Deadline,
}

/// What keeps a running station's session open when the outbox is empty: it waits for
/// `wake` (an event committed) until `shutdown`, and reports to `health`.
#[derive(Clone, Copy)]
pub(crate) struct Live<'a> {
    pub wake: &'a tokio::sync::Notify,
    /// How long an idle connection waits without a wake before looking at the outbox
    /// anyway: another process may have committed to it.
    pub recheck: Duration,
    pub shutdown: &'a tokio_util::sync::CancellationToken,
    pub health: &'a crate::delivery::DeliveryHealth,
}

async fn woken(live: Option<Live<'_>>) {
    match live {
        Some(l) => {
            let _ = tokio::time::timeout(l.recheck, l.wake.notified()).await;
        }
        None => std::future::pending().await,
    }
}

async fn stopped(live: Option<Live<'_>>) {
    match live {
        Some(l) => l.shutdown.cancelled().await,
        None => std::future::pending().await,
    }
}

/// Delivers the outbox's pending events, oldest first, until it is empty or `deadline`
/// passes (then the rest stays for next time: nothing is lost).
///
/// # Errors
/// Only outbox failures; connection problems are retried until the deadline and
/// reported in [`DrainReport::last_error`].
pub async fn drain(
    outbox: &mut Outbox,
    cfg: &BrokerConfig,
    deadline: Instant,
) -> Result<DrainReport, DeliveryError> {
    let mut report = DrainReport::default();
    let mut backoff = reconnect_backoff();
    while outbox.stats()?.depth > 0 && Instant::now() < deadline {
        report.connections += 1;
        match session(outbox, cfg, deadline, &mut report, &mut backoff, None).await? {
            SessionEnd::Drained | SessionEnd::Deadline => break,
            SessionEnd::Failed(reason) => {
                report.last_error = Some(reason);
                // Whatever is delivered after an outage is late.
                outbox.mark_historical()?;
                let wait = backoff.take();
                tokio::time::sleep_until((Instant::now() + wait).min(deadline)).await;
            }
        }
    }
    report.pending = outbox.stats()?.depth;
    Ok(report)
}

/// One connection: publishes what waits, oldest first, and deletes each event on its
/// PUBACK. Without `live` it disconnects once the outbox is empty (`deliver`); with it,
/// it stays connected and waits for new events until its shutdown, then flushes for
/// [`crate::delivery::FINAL_FLUSH`] at most.
pub(crate) async fn session(
    outbox: &mut Outbox,
    cfg: &BrokerConfig,
    deadline: Instant,
    report: &mut DrainReport,
    backoff: &mut Backoff,
    live: Option<Live<'_>>,
) -> Result<SessionEnd, DeliveryError> {
    let mut deadline = deadline;
    // Draining (`deliver`, or a running station asked to stop): done once empty.
    let mut stopping = live.is_none();
    let mut opts = cfg.endpoint.options(&cfg.client_id);
    // A clean start: nothing is subscribed on this connection, and what was in flight on
    // the last one is sent again from the outbox. The outgoing size limit is the broker's
    // (its CONNACK); the outbox refuses events larger than a collector takes.
    opts.set_clean_start(true)
        .set_outgoing_inflight_upper_limit(100)
        .set_max_packet_size(Some(MAX_INBOUND_PACKET as u32));
    let mut flight = InFlight::new(cfg.window);
    let (client, mut eventloop) = AsyncClient::new(opts, flight.window + 8);
    let topic = cfg.topics.topic(Leaf::Detections);
    let mut connected = false;
    loop {
        flight.commit_when_due(outbox, report)?;
        if connected {
            flight.refill(outbox, &client, &topic)?;
            // The outbox is counted only once nothing is in flight (not for every PUBACK:
            // the throughput path), which is when its depth means something.
            let drained = flight.is_empty() && {
                let depth = match live {
                    // What the heartbeat says the station holds, read in the same look.
                    Some(l) => l.health.note_outbox(outbox),
                    None => None,
                };
                match depth {
                    Some(d) => d == 0,
                    None => outbox.stats()?.depth == 0,
                }
            };
            if let (true, Some(l)) = (drained, live) {
                l.health.fine();
            }
            if drained && stopping {
                let _ = client.try_disconnect();
                // Let the DISCONNECT go out (bounded: the broker closes the connection).
                let flush = Instant::now() + Duration::from_secs(2);
                while let Ok(Ok(_)) =
                    tokio::time::timeout_at(flush.min(deadline), eventloop.poll()).await
                {
                }
                return Ok(SessionEnd::Drained);
            }
        }
        let idle = connected && flight.is_empty();
        let polled = tokio::select! {
            polled = tokio::time::timeout_at(deadline, eventloop.poll()) => polled,
            () = woken(live), if idle && !stopping => {
                // Replay requests handed over by presence come with a wake (kept until the
                // session is idle): archived events queued again, sent like any other.
                if let Some(l) = live {
                    l.health.serve_replays(outbox);
                }
                continue;
            }
            () = stopped(live), if !stopping => {
                stopping = true;
                deadline = deadline.min(Instant::now() + crate::delivery::FINAL_FLUSH);
                continue;
            }
        };
        let event = match polled {
            Err(_) => {
                flight.commit(outbox, report)?;
                return Ok(SessionEnd::Deadline);
            }
            Ok(Err(e)) => {
                flight.commit(outbox, report)?;
                return Ok(SessionEnd::Failed(explain(
                    &e,
                    "station",
                    "mqtt.credentials_file",
                )));
            }
            Ok(Ok(event)) => event,
        };
        match event {
            Event::Incoming(Packet::ConnAck(ack)) => {
                if ack.code != ConnectReturnCode::Success {
                    return Ok(SessionEnd::Failed(format!(
                        "the broker refused the connection: {:?}",
                        ack.code
                    )));
                }
                // The station's status is [`presence`]'s job, on its own connection.
                connected = true;
                backoff.reset();
            }
            Event::Outgoing(Outgoing::Publish(pkid)) => flight.published(pkid),
            Event::Incoming(Packet::PubAck(ack)) => {
                let Some(rowid) = flight.in_flight.remove(&ack.pkid) else {
                    continue;
                };
                let Some((reason, retry)) = puback_refusal(ack.reason) else {
                    flight.acked.push(rowid);
                    if let Some(l) = live {
                        l.health.fine();
                    }
                    continue;
                };
                // The event stays in the outbox; what was accepted is acked.
                flight.commit(outbox, report)?;
                if retry {
                    return Ok(SessionEnd::Failed(format!(
                        "the broker did not accept an event: {reason}"
                    )));
                }
                let _ = client.try_disconnect();
                return Err(DeliveryError::Refused {
                    topic,
                    reason,
                    kept: outbox.stats()?.depth,
                });
            }
            _ => {}
        }
    }
}

/// One connection's events between the outbox and their PUBACKs.
struct InFlight {
    /// Events in flight at once.
    window: usize,
    /// Outbox rows in the order their publishes were requested.
    requested: VecDeque<i64>,
    /// Rows by packet id, once their publish went out.
    in_flight: HashMap<u16, i64>,
    /// Every row requested and not yet deleted.
    sent: HashSet<i64>,
    /// PUBACKed rows, deleted together (one sync per batch). A crash before the delete
    /// only sends them again: duplicates, never losses.
    acked: Vec<i64>,
}

impl InFlight {
    fn new(window: usize) -> Self {
        Self {
            window: window.clamp(1, 64),
            requested: VecDeque::new(),
            in_flight: HashMap::new(),
            sent: HashSet::new(),
            acked: Vec::new(),
        }
    }

    /// Nothing requested is waiting for its PUBACK or its delete.
    fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    /// Deletes the acknowledged rows.
    fn commit(&mut self, outbox: &mut Outbox, report: &mut DrainReport) -> Result<(), OutboxError> {
        report.delivered += outbox.ack_many(&self.acked)?;
        for rowid in self.acked.drain(..) {
            self.sent.remove(&rowid);
        }
        Ok(())
    }

    /// [`Self::commit`] once half the window is acknowledged, or all of it.
    fn commit_when_due(
        &mut self,
        outbox: &mut Outbox,
        report: &mut DrainReport,
    ) -> Result<(), OutboxError> {
        let due = self.acked.len() >= self.window / 2 || self.sent.len() == self.acked.len();
        if !self.acked.is_empty() && due {
            self.commit(outbox, report)?;
        }
        Ok(())
    }

    /// Requests the next pending rows once half the window is free, so that the outbox is
    /// read in batches.
    fn refill(
        &mut self,
        outbox: &mut Outbox,
        client: &AsyncClient,
        topic: &str,
    ) -> Result<(), OutboxError> {
        if self.sent.len() > self.window / 2 {
            return Ok(());
        }
        let room = self.window - self.sent.len();
        let candidates: Vec<_> = outbox
            .pending(self.window + self.sent.len())?
            .into_iter()
            .filter(|p| !self.sent.contains(&p.rowid))
            .take(room)
            .collect();
        for p in candidates {
            let payload = serde_json::to_vec(&p.event).map_err(|e| OutboxError::Corrupt {
                path: PathBuf::new(),
                rowid: p.rowid,
                reason: e.to_string(),
            })?;
            if client
                .try_publish(topic, QoS::AtLeastOnce, false, payload)
                .is_err()
            {
                break; // the request queue is full: poll first
            }
            self.requested.push_back(p.rowid);
            self.sent.insert(p.rowid);
        }
        Ok(())
    }

    /// The oldest requested publish went out as packet `pkid`.
    fn published(&mut self, pkid: u16) {
        if let Some(row) = self.requested.pop_front() {
            self.in_flight.insert(pkid, row);
        }
    }
}

/// The largest packet a station takes, told to the broker at connect (an MQTT 5 broker
/// then drops larger messages for it). From a broker that sends one anyway it ends the
/// presence connection (rumqttc cannot skip a packet); it reconnects with backoff, and
/// requests are QoS 0, so nothing comes back.
pub(crate) const MAX_INBOUND_PACKET: usize = 64 * 1024;
