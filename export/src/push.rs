//! Offering a bundle to stations: the signed offer ([`warble_core::bundle::offer`])
//! published retained on a station's or a group's bundle topic, so a station that is
//! offline now takes it when it next connects. A station's own topic beats its group's.

use std::path::Path;
use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event};
use warble_core::bundle::offer::{MAX_OFFER_BYTES, Offer};
use warble_core::bundle::{Bundle, Limits, SecretKey, TrustedKeys};
use warble_core::wire::{Leaf, StationId, TopicPrefix, Topics};
use warble_mqtt::Endpoint;

/// Whom an offer is for.
#[derive(Debug, Clone)]
pub enum Target {
    /// One station: `<prefix>/<station>/bundle`.
    Station(StationId),
    /// A fleet group: `<prefix>/fleet/<group>/bundle`.
    Group(String),
}

impl Target {
    /// The retained topic of the offer.
    ///
    /// # Errors
    /// A group name that cannot be a topic level.
    pub fn topic(&self, prefix: &TopicPrefix) -> Result<String, PushError> {
        match self {
            Self::Station(id) => Ok(Topics::new(prefix.clone(), id.clone()).topic(Leaf::Bundle)),
            Self::Group(g) => prefix
                .group_topic(g, Leaf::Bundle)
                .map_err(PushError::Target),
        }
    }
}

/// Why an offer was not published.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The bundle file cannot be read.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// Larger than a station reads.
    #[error(
        "{path}: {size} bytes with its offer header, more than a station reads on its bundle topic ({MAX_OFFER_BYTES} bytes)"
    )]
    TooLarge {
        /// The file.
        path: String,
        /// Its offer's size.
        size: usize,
    },
    /// The bundle does not verify: no station would take it.
    #[error("{path} does not verify, so no station would take it: {reason}")]
    Bundle {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The station or group named cannot be a topic level.
    #[error("{0}")]
    Target(String),
    /// The broker could not be reached, or refused.
    #[error("broker: {0}")]
    Broker(String),
}

/// The offer message for the bundle at `path`, signed with `key`: the bundle is verified
/// first (against `trusted` and the key's own public half), so what is offered is what a
/// station would take.
///
/// # Errors
/// [`PushError::Io`], [`PushError::TooLarge`], [`PushError::Bundle`].
pub fn offer_message(
    path: &Path,
    key: &SecretKey,
    trusted: &TrustedKeys,
    force: bool,
    probation_s: Option<u64>,
) -> Result<(Bundle, Vec<u8>), PushError> {
    let name = path.display().to_string();
    let size = std::fs::metadata(path)
        .map_err(|e| PushError::Io {
            path: name.clone(),
            reason: e.to_string(),
        })?
        .len() as usize;
    // The header is well under a kilobyte; refuse before reading a huge file.
    if size + 1024 > MAX_OFFER_BYTES {
        return Err(PushError::TooLarge {
            path: name,
            size: size + 1024,
        });
    }
    let bytes = std::fs::read(path).map_err(|e| PushError::Io {
        path: name.clone(),
        reason: e.to_string(),
    })?;
    let mut keys = trusted.clone();
    keys.insert(key.public().clone());
    let bundle =
        Bundle::from_bytes(&bytes, &keys, &Limits::default()).map_err(|e| PushError::Bundle {
            path: name.clone(),
            reason: e.to_string(),
        })?;
    let message = Offer::encode_with_probation(&bytes, force, chrono::Utc::now(), probation_s, key);
    if message.len() > MAX_OFFER_BYTES {
        return Err(PushError::TooLarge {
            path: name,
            size: message.len(),
        });
    }
    Ok((bundle, message))
}

/// Publishes `payload` retained with QoS 1 on `topic` and waits for the broker's
/// acknowledgement (at most `timeout`). An empty payload clears the retained offer.
///
/// # Errors
/// [`PushError::Broker`]: unreachable, refused login, or a refused publish.
pub async fn publish_retained(
    endpoint: &Endpoint,
    client_id: &str,
    topic: &str,
    payload: Vec<u8>,
    timeout: Duration,
) -> Result<(), PushError> {
    let mut opts = endpoint.options(client_id);
    opts.set_clean_start(true)
        .set_max_packet_size(Some(MAX_OFFER_BYTES as u32 + 1024));
    let (client, mut eventloop) = AsyncClient::new(opts, 4);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut sent = false;
    loop {
        let event = tokio::time::timeout_at(deadline, eventloop.poll())
            .await
            .map_err(|_| PushError::Broker(format!("no acknowledgement within {timeout:?}")))?
            .map_err(|e| {
                PushError::Broker(warble_mqtt::explain(&e, "operator", "--credentials-file"))
            })?;
        match event {
            Event::Incoming(Packet::ConnAck(_)) if !sent => {
                client
                    .publish(topic, QoS::AtLeastOnce, true, payload.clone())
                    .await
                    .map_err(|e| PushError::Broker(e.to_string()))?;
                sent = true;
            }
            Event::Incoming(Packet::PubAck(ack)) => {
                if let Some((why, _)) = warble_mqtt::puback_refusal(ack.reason) {
                    return Err(PushError::Broker(format!(
                        "the broker refused the offer on {topic}: {why}"
                    )));
                }
                let _ = client.disconnect().await;
                let _ = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await;
                return Ok(());
            }
            Event::Incoming(Packet::Disconnect(d)) => {
                return Err(PushError::Broker(format!(
                    "the broker disconnected ({:?}; is its message_size_limit below the offer's size?)",
                    d.reason_code
                )));
            }
            _ => {}
        }
    }
}
