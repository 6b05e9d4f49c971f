//! What Warble's stations and collectors share to talk MQTT 5: the broker [`Endpoint`]
//! (host, port, credentials, TLS), its connection options, and a technician's words for a
//! broker's refusals ([`explain`], [`puback_refusal`]). The backoff between attempts is
//! [`warble_core::backoff::Backoff`].
#![deny(missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, PubAckReason};
use rumqttc::v5::{ConnectionError, MqttOptions};
use rumqttc::{TlsConfiguration, Transport};
use warble_core::backoff::Backoff;

/// A TLS or credentials file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A TLS file cannot be used.
    #[error("TLS: {}: {reason}", path.display())]
    Tls {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The broker URL, or the files given with it, do not fit.
    #[error("{0}")]
    Url(String),
    /// The credentials file cannot be used.
    #[error("credentials file {}: {reason}", path.display())]
    Credentials {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// How a command-line tool reaches the broker: the same URL and files as a station's
/// `[mqtt]` section, checked by the same rules.
#[derive(Debug, Clone, clap::Args)]
pub struct BrokerArgs {
    /// Broker, `mqtt://host[:port]` or `mqtts://host[:port]`.
    #[arg(long)]
    pub broker: String,
    /// `username:password` on the first line of this file.
    #[arg(long)]
    pub credentials_file: Option<PathBuf>,
    /// CA certificate(s) to trust for `mqtts://` (default: the system's).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate for mutual TLS (with --client-key).
    #[arg(long, requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// Client private key for mutual TLS (with --client-cert).
    #[arg(long, requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// Allow `mqtt://` (plaintext) with credentials to a broker not on this machine.
    #[arg(long)]
    pub allow_plaintext: bool,
}

impl BrokerArgs {
    /// The broker's URL, once the files fit it: TLS files only for `mqtts://`, and no
    /// password sent in plaintext to another machine without `--allow-plaintext`
    /// (`whose` password, in the message).
    ///
    /// # Errors
    /// What is wrong, in words for the command line.
    pub fn url(&self, whose: &str) -> Result<warble_config::broker::BrokerUrl, String> {
        let url = warble_config::broker::BrokerUrl::parse(&self.broker)?;
        if !(url.tls
            || url.is_loopback()
            || self.credentials_file.is_none()
            || self.allow_plaintext)
        {
            return Err(format!(
                "plaintext MQTT to `{}` would send the {whose}'s password unencrypted (use \
                 mqtts://, or --allow-plaintext)",
                url.host
            ));
        }
        if !url.tls && (self.ca_file.is_some() || self.client_cert.is_some()) {
            return Err("--ca-file and --client-cert are for mqtts:// brokers".into());
        }
        Ok(url)
    }

    /// The broker's endpoint: the URL checked as [`Self::url`] says, the credentials and
    /// TLS files read.
    ///
    /// # Errors
    /// [`SetupError`]: the URL, or a file that cannot be used.
    pub fn endpoint(&self, whose: &str) -> Result<Endpoint, SetupError> {
        let url = self.url(whose).map_err(SetupError::Url)?;
        Endpoint::with_files(
            &url.host,
            url.port,
            url.tls,
            self.credentials_file.as_deref(),
            self.ca_file.as_deref(),
            self.client_cert.as_deref().zip(self.client_key.as_deref()),
        )
    }
}

/// A broker and how to log in to it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Username and password.
    pub credentials: Option<(String, String)>,
    /// TLS (`mqtts://`), with its trust roots and optional client identity.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Keep-alive interval.
    pub keep_alive: Duration,
}

impl Endpoint {
    /// Plain TCP to `host:port`, no login, 30-s keep-alive.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            credentials: None,
            tls: None,
            keep_alive: Duration::from_secs(30),
        }
    }

    /// `host:port` over TLS when `tls` (trusting `ca_file`, else the system's roots, and
    /// presenting `identity` — certificate and key — for mutual TLS), logging in with the
    /// `username:password` of `credentials` if given: how stations and the command-line
    /// tools reach a broker.
    ///
    /// # Errors
    /// A file that cannot be used, named.
    pub fn with_files(
        host: &str,
        port: u16,
        tls: bool,
        credentials: Option<&Path>,
        ca_file: Option<&Path>,
        identity: Option<(&Path, &Path)>,
    ) -> Result<Self, SetupError> {
        let tls = tls.then(|| tls_config(ca_file, identity)).transpose()?;
        Ok(Self {
            credentials: credentials.map(read_credentials).transpose()?,
            tls,
            ..Self::new(host, port)
        })
    }

    /// Connection options for `client_id`: keep-alive, credentials, TLS, and TCP without
    /// Nagle's algorithm (see [`no_delay`]).
    pub fn options(&self, client_id: &str) -> MqttOptions {
        let mut opts = MqttOptions::new(client_id, &self.host, self.port);
        opts.set_keep_alive(self.keep_alive)
            .set_network_options(no_delay());
        if let Some((user, pass)) = &self.credentials {
            opts.set_credentials(user, pass);
        }
        if let Some(tls) = &self.tls {
            opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                tls.clone(),
            )));
        }
        opts
    }
}

/// The wait between connection attempts: 0.5 s doubling to 30 s, each shortened by up to
/// half at random so that a fleet does not reconnect in step.
pub fn reconnect_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(500), Duration::from_secs(30)).with_jitter()
}

/// TCP without Nagle's algorithm, so that several small publishes in flight go out at
/// once. (The broker needs the same — mosquitto's `set_tcp_nodelay true` — or it holds
/// its PUBACKs ~40 ms each window: ~720 instead of ~30,000 events/s in the bench.)
pub fn no_delay() -> rumqttc::NetworkOptions {
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    net
}

/// The TLS client configuration: trust the CA file if given, else the system's roots;
/// present the client certificate and key for mutual TLS if given. The ring provider
/// (pure Rust and C, no system OpenSSL) does the cryptography.
///
/// # Errors
/// Unreadable or unparsable PEM files, each named.
pub fn tls_config(
    ca_file: Option<&Path>,
    identity: Option<(&Path, &Path)>,
) -> Result<Arc<rustls::ClientConfig>, SetupError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let tls_err = |path: &Path, reason: String| SetupError::Tls {
        path: path.to_owned(),
        reason,
    };
    let read = |path: &Path| {
        warble_core::files::read_limited(path, warble_core::files::SMALL_FILE_LIMIT)
            .map_err(|e| tls_err(path, e.to_string()))
    };
    let certs = |path: &Path| -> Result<Vec<CertificateDer<'static>>, SetupError> {
        let pem = read(path)?;
        let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| tls_err(path, format!("not PEM certificates: {e}")))?;
        if certs.is_empty() {
            return Err(tls_err(path, "holds no certificate".into()));
        }
        Ok(certs)
    };
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in certs(path)? {
                roots
                    .add(cert)
                    .map_err(|e| tls_err(path, format!("unusable CA certificate: {e}")))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
            if roots.is_empty() {
                return Err(tls_err(
                    Path::new("(system roots)"),
                    "no trusted CA certificates found; set mqtt.ca_file".into(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(Path::new("(TLS)"), e.to_string()))?
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => {
            let chain = certs(cert)?;
            let pem = read(key)?;
            let key_der = PrivateKeyDer::from_pem_slice(&pem)
                .map_err(|e| tls_err(key, format!("not a PEM private key: {e}")))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| tls_err(cert, format!("client certificate and key do not fit: {e}")))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Reads `username:password` from the first line of a credentials file (kept out of the
/// station file so that the file can be shared and the secret stays 0600).
///
/// # Errors
/// [`SetupError::Credentials`] naming the file.
pub fn read_credentials(path: &Path) -> Result<(String, String), SetupError> {
    let err = |reason: String| SetupError::Credentials {
        path: path.to_owned(),
        reason,
    };
    let text = warble_core::files::read_small_text(path).map_err(|e| err(e.to_string()))?;
    let (user, pass) = warble_config::broker::parse_credentials(&text).map_err(err)?;
    Ok((user.to_owned(), pass.to_owned()))
}

/// A connection error as a technician needs it: a refused login says whose credentials
/// (`"station"`) and which setting to check (`"mqtt.credentials_file"`).
pub fn explain(e: &ConnectionError, whose: &str, setting: &str) -> String {
    match e {
        ConnectionError::ConnectionRefused(
            code @ (ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized),
        ) => format!(
            "the broker refused the {whose}'s credentials ({code:?}): check {setting} and the \
             broker's password file"
        ),
        ConnectionError::ConnectionRefused(code) => {
            format!("the broker refused the connection ({code:?})")
        }
        other => other.to_string(),
    }
}

/// A PUBACK's refusal in words, and whether retrying could help (`None`: accepted).
pub fn puback_refusal(reason: PubAckReason) -> Option<(&'static str, bool)> {
    match reason {
        PubAckReason::Success | PubAckReason::NoMatchingSubscribers => None,
        PubAckReason::NotAuthorized => Some(("not authorised", false)),
        PubAckReason::TopicNameInvalid => Some(("topic name invalid", false)),
        PubAckReason::PayloadFormatInvalid => Some(("payload format invalid", false)),
        PubAckReason::QuotaExceeded => Some(("quota exceeded", true)),
        PubAckReason::PacketIdentifierInUse => Some(("packet identifier in use", true)),
        PubAckReason::UnspecifiedError => Some(("unspecified error", true)),
        PubAckReason::ImplementationSpecificError => Some(("implementation-specific error", true)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_as_credentials_file_is_refused() {
        let err = read_credentials(Path::new("/dev/zero")).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn credentials_are_user_colon_password_on_the_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cred");
        std::fs::write(&path, "marsh-3:s3cr:et\nignored\n").unwrap();
        assert_eq!(
            read_credentials(&path).unwrap(),
            ("marsh-3".to_owned(), "s3cr:et".to_owned())
        );
        std::fs::write(&path, "no colon\n").unwrap();
        assert!(
            read_credentials(&path)
                .unwrap_err()
                .to_string()
                .contains("username:password")
        );
    }

    #[test]
    fn denials_stop_and_transient_refusals_retry() {
        assert_eq!(puback_refusal(PubAckReason::Success), None);
        assert_eq!(
            puback_refusal(PubAckReason::NotAuthorized),
            Some(("not authorised", false))
        );
        assert_eq!(
            puback_refusal(PubAckReason::QuotaExceeded).map(|r| r.1),
            Some(true)
        );
    }
}
