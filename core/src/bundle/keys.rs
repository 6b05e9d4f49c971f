//! Ed25519 signing keys for bundles, in one-line text files an operator can read.
//!
//! - public key file: `warble-ed25519-public <64 hex digits> [comment]`
//! - secret key file: `warble-ed25519-secret <64 hex digits>` (the 32-byte seed)
//!
//! A key's id is the first 16 hex digits of the SHA-256 of its 32 public-key bytes, so it
//! can be printed, compared by eye and written into config files.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

const PUBLIC_TAG: &str = "warble-ed25519-public";
const SECRET_TAG: &str = "warble-ed25519-secret";

/// Why a key cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum KeyError {
    /// The key file cannot be read.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// The text is not a key of the expected kind.
    #[error("{source_name}: {reason}")]
    Syntax {
        /// Where the text came from (file name or `<text>`).
        source_name: String,
        /// What is wrong.
        reason: String,
    },
}

/// A key fingerprint: 16 lower-case hex digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(String);

impl KeyId {
    fn of(key: &VerifyingKey) -> Self {
        let digest = Sha256::digest(key.as_bytes());
        Self(hex::encode(&digest[..8]))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn decode_32(hex_text: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(hex_text).map_err(|e| format!("key is not hex: {e}"))?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| format!("key is {} bytes, expected 32", bytes.len()))
}

/// Parses the hex of a 64-byte signature.
pub(super) fn parse_signature(hex_text: &str) -> Result<Signature, String> {
    let bytes = hex::decode(hex_text).map_err(|e| format!("signature is not hex: {e}"))?;
    Signature::from_slice(&bytes)
        .map_err(|_| format!("signature is {} bytes, expected 64", bytes.len()))
}

fn read_text(path: &Path) -> Result<String, KeyError> {
    crate::files::read_small_text(path).map_err(|e| KeyError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// A public key that may verify bundles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    id: KeyId,
    comment: String,
}

impl PublicKey {
    /// Parses `warble-ed25519-public <hex> [comment]`; `source_name` names the origin in
    /// errors.
    ///
    /// # Errors
    /// [`KeyError::Syntax`] for anything else (including a secret key by mistake).
    pub fn parse(text: &str, source_name: &str) -> Result<Self, KeyError> {
        let syntax = |reason: String| KeyError::Syntax {
            source_name: source_name.to_owned(),
            reason,
        };
        let line = text.trim();
        let mut parts = line.splitn(3, char::is_whitespace);
        match parts.next() {
            Some(PUBLIC_TAG) => {}
            Some(SECRET_TAG) => {
                return Err(syntax(
                    "this is a SECRET key; give the matching .pub file".into(),
                ));
            }
            _ => return Err(syntax(format!("does not start with `{PUBLIC_TAG}`"))),
        }
        let bytes = decode_32(parts.next().unwrap_or_default()).map_err(syntax)?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|_| syntax("not a valid ed25519 public key".into()))?;
        Ok(Self {
            id: KeyId::of(&key),
            key,
            comment: parts.next().unwrap_or_default().trim().to_owned(),
        })
    }

    /// Reads a public key file.
    ///
    /// # Errors
    /// [`KeyError`] naming the file.
    pub fn read(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        let path = path.as_ref();
        Self::parse(&read_text(path)?, &path.display().to_string())
    }

    /// The key's fingerprint.
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// The free-text comment (e.g. who owns the key).
    pub fn comment(&self) -> &str {
        &self.comment
    }

    /// The key file's text (one line, newline-terminated).
    pub fn to_text(&self) -> String {
        let hex = hex::encode(self.key.as_bytes());
        if self.comment.is_empty() {
            format!("{PUBLIC_TAG} {hex}\n")
        } else {
            format!("{PUBLIC_TAG} {hex} {}\n", self.comment)
        }
    }

    /// Strict ed25519 verification (rejects malleable and small-order signatures).
    pub(super) fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), ()> {
        self.key.verify_strict(message, signature).map_err(|_| ())
    }
}

/// A signing key. Never written into a bundle; its file should be mode 0600.
pub struct SecretKey {
    key: SigningKey,
    public: PublicKey,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey")
            .field("id", self.public.id())
            .finish_non_exhaustive()
    }
}

impl SecretKey {
    /// The key for a 32-byte seed (from the OS's random source when generating).
    pub fn from_seed(seed: [u8; 32], comment: &str) -> Self {
        let key = SigningKey::from_bytes(&seed);
        let verifying = key.verifying_key();
        let public = PublicKey {
            id: KeyId::of(&verifying),
            key: verifying,
            comment: comment.trim().to_owned(),
        };
        Self { key, public }
    }

    /// Parses `warble-ed25519-secret <hex>`.
    ///
    /// # Errors
    /// [`KeyError::Syntax`].
    pub fn parse(text: &str, source_name: &str) -> Result<Self, KeyError> {
        let syntax = |reason: String| KeyError::Syntax {
            source_name: source_name.to_owned(),
            reason,
        };
        let mut parts = text.split_whitespace();
        if parts.next() != Some(SECRET_TAG) {
            return Err(syntax(format!("does not start with `{SECRET_TAG}`")));
        }
        let seed = decode_32(parts.next().unwrap_or_default()).map_err(syntax)?;
        Ok(Self::from_seed(seed, ""))
    }

    /// Reads a secret key file.
    ///
    /// # Errors
    /// [`KeyError`] naming the file.
    pub fn read(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        let path = path.as_ref();
        Self::parse(&read_text(path)?, &path.display().to_string())
    }

    /// The key file's text.
    pub fn to_text(&self) -> String {
        format!("{SECRET_TAG} {}\n", hex::encode(self.key.to_bytes()))
    }

    /// The matching public key.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// Signs `message` (bundles sign their manifest bytes).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

/// The keys a recorder accepts bundles from.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: BTreeMap<String, PublicKey>,
}

impl TrustedKeys {
    /// No keys: every bundle is rejected.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key.
    pub fn insert(&mut self, key: PublicKey) {
        self.keys.insert(key.id().to_string(), key);
    }

    /// Reads each public key file.
    ///
    /// # Errors
    /// The first file that cannot be read or parsed.
    pub fn read_files<P: AsRef<Path>>(paths: &[P]) -> Result<Self, KeyError> {
        let mut keys = Self::new();
        for path in paths {
            keys.insert(PublicKey::read(path)?);
        }
        Ok(keys)
    }

    /// The key with this id.
    pub fn get(&self, id: &str) -> Option<&PublicKey> {
        self.keys.get(id)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// No keys at all.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl FromIterator<PublicKey> for TrustedKeys {
    fn from_iter<I: IntoIterator<Item = PublicKey>>(iter: I) -> Self {
        let mut keys = Self::new();
        for key in iter {
            keys.insert(key);
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_round_trip() {
        let secret = SecretKey::from_seed([7; 32], "field team");
        let public_text = secret.public().to_text();
        assert!(public_text.starts_with("warble-ed25519-public "));
        let public = PublicKey::parse(&public_text, "k.pub").unwrap();
        assert_eq!(&public, secret.public());
        assert_eq!(public.comment(), "field team");
        assert_eq!(public.id().as_str().len(), 16);
        let again = SecretKey::parse(&secret.to_text(), "k.key").unwrap();
        assert_eq!(again.public().id(), secret.public().id());
    }

    #[test]
    fn signatures_verify_only_for_the_signed_message() {
        let secret = SecretKey::from_seed([1; 32], "");
        let sig = Signature::from_bytes(&secret.sign(b"manifest"));
        assert!(secret.public().verify(b"manifest", &sig).is_ok());
        assert!(secret.public().verify(b"manifesT", &sig).is_err());
        let other = SecretKey::from_seed([2; 32], "");
        assert!(other.public().verify(b"manifest", &sig).is_err());
    }

    #[test]
    fn bad_key_text_is_named() {
        let secret = SecretKey::from_seed([3; 32], "");
        let err = PublicKey::parse(&secret.to_text(), "ops.key").unwrap_err();
        assert!(err.to_string().contains("SECRET"), "{err}");
        let err = PublicKey::parse("warble-ed25519-public abcd", "x.pub").unwrap_err();
        assert_eq!(
            err.to_string(),
            "x.pub: key is 2 bytes, expected 32",
            "{err}"
        );
        assert!(PublicKey::parse("ssh-ed25519 AAAA", "y.pub").is_err());
    }
}
