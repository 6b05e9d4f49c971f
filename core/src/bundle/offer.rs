//! The offer of a bundle to stations over MQTT (`warble.offer/1`): what an operator
//! publishes, retained, on `<prefix>/<station>/bundle` or `<prefix>/fleet/<group>/bundle`.
//!
//! One message carries a one-line JSON header and the bundle's bytes after it:
//!
//! ```text
//! {"schema":"warble.offer/1","sha256":"…","force":false,"issued":"2026-12-02T15:00:00Z","key_id":"…","signature":"…"}\n
//! <the .warble file>
//! ```
//!
//! The header is signed by a trusted key like the bundle itself, so that what a bundle
//! cannot say about itself is authentic too: that the operator wants it installed even
//! though it is not newer (`force`, a rollback by hand), and when the operator said so
//! (`issued`). A station refuses an offer not issued after the last one it took, so an
//! old offer published again — a downgrade an attacker could stage with a validly signed
//! old bundle — is refused.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::keys::{self, SecretKey, TrustedKeys};
use super::manifest::sha256_hex;

/// Schema string of the offer header.
pub const OFFER_SCHEMA: &str = "warble.offer/1";

/// The largest offer message (header and bundle): what `warble-export push` sends at most,
/// what a station reads at most on its bundle topics, and what the fleet broker's
/// `message_size_limit` must allow. BirdNET-sized models (≈ 50 MB) fit.
pub const MAX_OFFER_BYTES: usize = 128 << 20;

/// The longest header line.
pub const MAX_HEADER_BYTES: usize = 4096;

/// Why an offer message was not taken.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum OfferError {
    /// Larger than [`MAX_OFFER_BYTES`].
    #[error("{0} bytes, more than an offer may have ({MAX_OFFER_BYTES})")]
    TooLarge(usize),
    /// No header line, or one that does not parse.
    #[error("not a bundle offer ({OFFER_SCHEMA}): {0}")]
    Header(String),
    /// The header is signed by a key that is not trusted here.
    #[error("offer signed by key {0}, which is not among the trusted keys")]
    UnknownKey(String),
    /// The header's signature does not match.
    #[error("offer signature by key {0} does not match its header (tampered or corrupt)")]
    BadSignature(String),
    /// The bytes after the header are not the bundle the header names.
    #[error("the bundle's SHA-256 is {got}, the offer names {expected} (corrupt in transit)")]
    HashMismatch {
        /// In the header.
        expected: String,
        /// Of the bytes received.
        got: String,
    },
}

/// A verified offer header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Offer {
    /// Always [`OFFER_SCHEMA`].
    pub schema: String,
    /// SHA-256 (lower-case hex) of the bundle bytes after the header.
    pub sha256: String,
    /// Install it even if it is not newer than what the station runs or has run.
    #[serde(default)]
    pub force: bool,
    /// When the operator made the offer.
    pub issued: DateTime<Utc>,
    /// Seconds of live audio the model runs on probation (`None`: the station's own
    /// `model.probation_s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probation_s: Option<u64>,
    /// The key that signed the header.
    pub key_id: String,
    /// Hex of the ed25519 signature over [`Offer::signed_text`].
    pub signature: String,
}

impl Offer {
    /// The offer message for `bundle`, signed with `key`.
    pub fn encode(bundle: &[u8], force: bool, issued: DateTime<Utc>, key: &SecretKey) -> Vec<u8> {
        Self::encode_with_probation(bundle, force, issued, None, key)
    }

    /// [`Self::encode`], asking for `probation_s` seconds of probation on the station.
    pub fn encode_with_probation(
        bundle: &[u8],
        force: bool,
        issued: DateTime<Utc>,
        probation_s: Option<u64>,
        key: &SecretKey,
    ) -> Vec<u8> {
        // Whole seconds: the text signed is the text sent.
        let issued = DateTime::from_timestamp(issued.timestamp(), 0).unwrap_or(issued);
        let mut offer = Self {
            schema: OFFER_SCHEMA.to_owned(),
            sha256: sha256_hex(bundle),
            force,
            issued,
            probation_s,
            key_id: key.public().id().to_string(),
            signature: String::new(),
        };
        offer.signature = hex::encode(key.sign(offer.signed_text().as_bytes()));
        let mut message = serde_json::to_vec(&offer).unwrap_or_default();
        message.push(b'\n');
        message.extend_from_slice(bundle);
        message
    }

    /// Splits `message` into its verified header and the bundle bytes (which are then
    /// verified as a bundle on their own).
    ///
    /// # Errors
    /// [`OfferError`]: size, header syntax, key, signature, bundle hash.
    pub fn open<'m>(
        message: &'m [u8],
        trusted: &TrustedKeys,
    ) -> Result<(Self, &'m [u8]), OfferError> {
        if message.len() > MAX_OFFER_BYTES {
            return Err(OfferError::TooLarge(message.len()));
        }
        let head = &message[..message.len().min(MAX_HEADER_BYTES + 1)];
        let end = head.iter().position(|&b| b == b'\n').ok_or_else(|| {
            OfferError::Header(format!(
                "no header line in its first {MAX_HEADER_BYTES} bytes"
            ))
        })?;
        let offer: Self = serde_json::from_slice(&message[..end])
            .map_err(|e| OfferError::Header(e.to_string()))?;
        if offer.schema != OFFER_SCHEMA {
            return Err(OfferError::Header(format!("schema `{}`", offer.schema)));
        }
        let sig = keys::parse_signature(&offer.signature).map_err(OfferError::Header)?;
        let key = trusted
            .get(&offer.key_id)
            .ok_or_else(|| OfferError::UnknownKey(offer.key_id.clone()))?;
        key.verify(offer.signed_text().as_bytes(), &sig)
            .map_err(|()| OfferError::BadSignature(offer.key_id.clone()))?;
        let bundle = &message[end + 1..];
        let got = sha256_hex(bundle);
        if got != offer.sha256 {
            return Err(OfferError::HashMismatch {
                expected: offer.sha256,
                got,
            });
        }
        Ok((offer, bundle))
    }

    /// What the signature covers: schema, bundle hash, force, issue time and the
    /// probation asked for (`-`: none), one per line.
    pub fn signed_text(&self) -> String {
        format!(
            "{}\n{}\n{}\n{}\n{}",
            self.schema,
            self.sha256,
            self.force,
            self.issued.to_rfc3339_opts(SecondsFormat::Secs, true),
            self.probation_s
                .map_or_else(|| "-".to_owned(), |s| s.to_string())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SecretKey {
        SecretKey::from_seed([seed; 32], "test")
    }

    fn trusting(keys: &[&SecretKey]) -> TrustedKeys {
        keys.iter()
            .map(|k| k.public().clone())
            .collect::<TrustedKeys>()
    }

    fn at() -> DateTime<Utc> {
        "2026-12-02T15:00:00.750Z".parse().unwrap()
    }

    #[test]
    fn an_offer_opens_to_its_header_and_bundle() {
        let k = key(1);
        let message = Offer::encode(b"bundle bytes", true, at(), &k);
        let (offer, bundle) = Offer::open(&message, &trusting(&[&k])).unwrap();
        assert_eq!(bundle, b"bundle bytes");
        assert!(offer.force);
        assert_eq!(offer.issued.to_rfc3339(), "2026-12-02T15:00:00+00:00");
        assert_eq!(offer.key_id, k.public().id().as_str());
    }

    #[test]
    fn what_is_wrong_with_an_offer_is_named() {
        let (k, other) = (key(1), key(2));
        let trusted = trusting(&[&k]);
        let message = Offer::encode(b"bundle bytes", false, at(), &k);
        // Signed by a key the station does not trust.
        let foreign = Offer::encode(b"bundle bytes", false, at(), &other);
        assert!(matches!(
            Offer::open(&foreign, &trusted),
            Err(OfferError::UnknownKey(id)) if id == other.public().id().as_str()
        ));
        // The header changed after signing: `force` turned on.
        let text =
            String::from_utf8_lossy(&message).replacen("\"force\":false", "\"force\":true", 1);
        assert!(matches!(
            Offer::open(text.as_bytes(), &trusted),
            Err(OfferError::BadSignature(_))
        ));
        // The probation asked for is signed too: a shorter one cannot be slipped in.
        let asked = Offer::encode_with_probation(b"bundle bytes", false, at(), Some(600), &k);
        assert_eq!(
            Offer::open(&asked, &trusted).unwrap().0.probation_s,
            Some(600)
        );
        let text =
            String::from_utf8_lossy(&asked).replacen("\"probation_s\":600", "\"probation_s\":1", 1);
        assert!(matches!(
            Offer::open(text.as_bytes(), &trusted),
            Err(OfferError::BadSignature(_))
        ));
        // A byte of the bundle changed in transit.
        let mut corrupt = message.clone();
        *corrupt.last_mut().unwrap() ^= 1;
        assert!(matches!(
            Offer::open(&corrupt, &trusted),
            Err(OfferError::HashMismatch { .. })
        ));
        // A bare bundle, or anything else, is not an offer.
        assert!(matches!(
            Offer::open(&[0u8; 8000], &trusted),
            Err(OfferError::Header(why)) if why.contains("no header line")
        ));
        assert!(matches!(
            Offer::open(b"{\"schema\":\"x\"}\n", &trusted),
            Err(OfferError::Header(_))
        ));
        let huge = vec![b'x'; MAX_OFFER_BYTES + 1];
        assert_eq!(
            Offer::open(&huge, &trusted),
            Err(OfferError::TooLarge(MAX_OFFER_BYTES + 1))
        );
    }
}
