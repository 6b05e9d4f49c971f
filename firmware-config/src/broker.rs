//! The broker address: `mqtt://host[:port]` (plaintext, port 1883) or
//! `mqtts://host[:port]` (TLS, port 8883).

/// A parsed broker URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// TLS.
    pub tls: bool,
}

impl BrokerUrl {
    /// Parses `url`.
    ///
    /// # Errors
    /// What is wrong, in words for the config's reader.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("mqtt://") {
            (false, r)
        } else {
            return Err(format!(
                "`{url}` is not a broker URL (mqtt://host[:port] or mqtts://host[:port])"
            ));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                let port = p
                    .parse::<u16>()
                    .ok()
                    .filter(|&p| p > 0)
                    .ok_or_else(|| format!("`{p}` in `{url}` is not a port (1–65535)"))?;
                (h, port)
            }
            _ => (rest, if tls { 8883 } else { 1883 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains(['/', '@', ' ']) {
            return Err(format!("`{url}` has no usable host"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            tls,
        })
    }

    /// Whether the broker is on this machine (plaintext is then harmless).
    pub fn is_loopback(&self) -> bool {
        self.host == "localhost"
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

/// `username:password` from the first line of a credentials file's text (the file keeps
/// the secret out of the station file, which can then be shared).
///
/// # Errors
/// What is wrong with the line.
pub fn parse_credentials(text: &str) -> Result<(&str, &str), String> {
    text.lines()
        .next()
        .unwrap_or_default()
        .trim()
        .split_once(':')
        .ok_or_else(|| "expected `username:password` on the first line".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_default_ports() {
        let u = BrokerUrl::parse("mqtts://broker.example.org").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.tls),
            ("broker.example.org", 8883, true)
        );
        let u = BrokerUrl::parse("mqtt://127.0.0.1:1884").unwrap();
        assert_eq!((u.port, u.tls, u.is_loopback()), (1884, false, true));
        assert!(BrokerUrl::parse("mqtt://[::1]:1883").unwrap().is_loopback());
        assert!(BrokerUrl::parse("http://x").is_err());
        assert!(BrokerUrl::parse("mqtt://host:0").is_err());
        assert!(BrokerUrl::parse("mqtt://host:99999").is_err());
        assert!(BrokerUrl::parse("mqtt://").is_err());
    }
}
