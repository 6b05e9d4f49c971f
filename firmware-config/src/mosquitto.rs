//! The broker's side of a fleet, rendered for mosquitto 2: a configuration fragment with
//! the settings delivery depends on, and the password file (`password_file`) of every
//! broker user, hashed as `mosquitto_passwd` does (PBKDF2-HMAC-SHA512, 101 rounds, `$7$`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256, Sha512};

/// `[broker]` of `fleet.toml`: where the rendered files go on the broker host and how it
/// listens.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BrokerSide {
    /// Folder of the broker's Warble files on its host (`passwd`, `acl`, TLS files).
    #[serde(default = "default_dir")]
    pub dir: PathBuf,
    /// Where mosquitto keeps queued messages across restarts.
    #[serde(default = "default_persistence")]
    pub persistence_dir: PathBuf,
    /// Address the listener binds (`0.0.0.0`: every interface).
    #[serde(default = "default_bind")]
    pub bind: String,
    /// Listener port (default: the port of the stations' broker URL).
    #[serde(default)]
    pub port: Option<u16>,
    /// The broker's TLS certificate chain on its host (default `<dir>/broker.crt`).
    #[serde(default)]
    pub certfile: Option<PathBuf>,
    /// The broker's TLS key on its host (default `<dir>/broker.key`).
    #[serde(default)]
    pub keyfile: Option<PathBuf>,
}

impl Default for BrokerSide {
    fn default() -> Self {
        Self {
            dir: default_dir(),
            persistence_dir: default_persistence(),
            bind: default_bind(),
            port: None,
            certfile: None,
            keyfile: None,
        }
    }
}

fn default_dir() -> PathBuf {
    PathBuf::from("/etc/mosquitto/warble")
}

fn default_persistence() -> PathBuf {
    PathBuf::from("/var/lib/mosquitto")
}

fn default_bind() -> String {
    "0.0.0.0".into()
}

/// mosquitto's largest packet (its protocol limit).
const MQTT_MAX_PACKET: u64 = 268_435_455;

/// What the listener needs to know about the stations.
#[derive(Debug, Clone, Copy)]
pub struct Listener {
    /// The stations' broker port.
    pub port: u16,
    /// TLS (`mqtts://`).
    pub tls: bool,
    /// Stations present client certificates (`fleet.mutual_tls`).
    pub mutual_tls: bool,
    /// The CA is rendered with the broker's files (`<dir>/ca.crt`).
    pub has_ca: bool,
}

/// The configuration fragment (`/etc/mosquitto/conf.d/warble.conf`).
pub fn conf(fleet: &str, side: &BrokerSide, listener: Listener) -> String {
    let dir = &side.dir;
    // A bundle travels as one message: the broker must take the largest the agent takes.
    let max_packet =
        (warble_core::bundle::Limits::default().max_bundle_bytes + (64 << 10)).min(MQTT_MAX_PACKET);
    let mut text = format!(
        "# mosquitto settings for fleet {fleet}: rendered by warble-config; edit fleet.toml, \
         not this file.\n\
         # Include it from /etc/mosquitto/mosquitto.conf (Debian's includes conf.d/).\n\
         per_listener_settings false\n\
         allow_anonymous false\n\
         password_file {passwd}\n\
         acl_file {acl}\n\
         # Keep queued messages across a broker restart: a collector that was away still\n\
         # gets what stations sent meanwhile.\n\
         persistence true\n\
         persistence_location {persistence}/\n\
         autosave_interval 60\n\
         # The default of 1000 drops messages for a collector that falls behind a station\n\
         # emptying its outbox after an outage.\n\
         max_queued_messages 1000000\n\
         # Without it acknowledgements wait ~40 ms and delivery slows to ~700 events/s.\n\
         set_tcp_nodelay true\n\
         # Model bundles are single messages.\n\
         max_packet_size {max_packet}\n\
         \n\
         listener {port} {bind}\n",
        passwd = dir.join("passwd").display(),
        acl = dir.join("acl").display(),
        persistence = side.persistence_dir.display(),
        port = side.port.unwrap_or(listener.port),
        bind = side.bind,
    );
    if listener.tls {
        let cert = side
            .certfile
            .clone()
            .unwrap_or_else(|| dir.join("broker.crt"));
        let key = side
            .keyfile
            .clone()
            .unwrap_or_else(|| dir.join("broker.key"));
        let _ = writeln!(
            text,
            "certfile {}\nkeyfile {}",
            cert.display(),
            key.display()
        );
        if listener.has_ca {
            let _ = writeln!(text, "cafile {}", dir.join("ca.crt").display());
        }
        if listener.mutual_tls {
            let _ = writeln!(text, "require_certificate true");
        }
    }
    text
}

/// One `password_file` line: `user:$7$101$<salt>$<hash>`, as `mosquitto_passwd` writes
/// it. The salt is derived from the fleet, the user and the password, so that rendering
/// stays deterministic; it is unique per user and fleet, which is what a salt is for.
pub fn password_line(fleet: &str, user: &str, password: &str) -> String {
    const ROUNDS: u32 = 101;
    let digest = Sha256::digest(format!("warble-passwd\0{fleet}\0{user}\0{password}"));
    let salt = &digest[..12];
    let mut hash = [0u8; 64];
    pbkdf2::pbkdf2::<hmac::Hmac<Sha512>>(password.as_bytes(), salt, ROUNDS, &mut hash);
    let b64 = base64::engine::general_purpose::STANDARD;
    format!(
        "{user}:$7${ROUNDS}${}${}",
        b64.encode(salt),
        b64.encode(hash)
    )
}

/// The password of `user` in a credentials file's `text` (first line `user:password`).
///
/// # Errors
/// What is wrong with the line, in words for the fleet's owner.
pub fn password_of<'t>(text: &'t str, user: &str) -> Result<&'t str, String> {
    let (name, password) = crate::broker::parse_credentials(text)?;
    if name != user {
        return Err(format!(
            "names user `{name}`, not `{user}` (the broker user is the station id or the role's user)"
        ));
    }
    if password.is_empty() {
        return Err("has an empty password".into());
    }
    Ok(password)
}

/// Where a rendered broker file goes on the broker host.
pub fn destination(side: &BrokerSide, name: &str) -> PathBuf {
    if name == "warble.conf" {
        Path::new("/etc/mosquitto/conf.d").join(name)
    } else {
        side.dir.join(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line mosquitto_passwd 2.0.11 wrote for `alice` / `secret`, recomputed from its
    /// salt: the same PBKDF2 as ours.
    #[test]
    fn password_lines_hash_as_mosquitto_passwd_does() {
        let from_tool = "alice:$7$101$ebwWftkOh0RVIt2/$z0DUaXS1pm8+6B+4DzBpD0wK1Ngn3a9pdyMHBAUjHc73nxR1SkNHMw0zSVtDng7WFdd3sBXsTV6yyLOm7728sA==";
        let parts: Vec<&str> = from_tool.split('$').collect();
        let b64 = base64::engine::general_purpose::STANDARD;
        let salt = b64.decode(parts[3]).unwrap();
        let mut hash = [0u8; 64];
        pbkdf2::pbkdf2::<hmac::Hmac<Sha512>>(b"secret", &salt, 101, &mut hash);
        assert_eq!(b64.encode(hash), parts[4]);

        let line = password_line("f", "alice", "secret");
        assert!(line.starts_with("alice:$7$101$"), "{line}");
        assert_eq!(line, password_line("f", "alice", "secret"), "deterministic");
        assert_ne!(line, password_line("f", "bob", "secret"), "salted per user");
    }

    #[test]
    fn a_tls_listener_names_its_files_and_asks_for_client_certificates() {
        let side = BrokerSide::default();
        let tls = Listener {
            port: 8883,
            tls: true,
            mutual_tls: true,
            has_ca: true,
        };
        let text = conf("f", &side, tls);
        for line in [
            "listener 8883 0.0.0.0\n",
            "certfile /etc/mosquitto/warble/broker.crt\n",
            "cafile /etc/mosquitto/warble/ca.crt\n",
            "require_certificate true\n",
            "persistence true\n",
            "set_tcp_nodelay true\n",
            "max_queued_messages 1000000\n",
            "max_packet_size 268435455\n",
        ] {
            assert!(text.contains(line), "{line:?} in {text}");
        }
        let plain = conf(
            "f",
            &side,
            Listener {
                tls: false,
                mutual_tls: false,
                ..tls
            },
        );
        assert!(!plain.contains("certfile"), "{plain}");
    }
}
