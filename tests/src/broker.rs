//! A real mosquitto broker per test.
//!
//! Each broker gets a free port on 127.0.0.1 (never a fixed one), its own config, data
//! directory and log in a temporary directory, and is killed when dropped. If mosquitto is
//! not installed the harness fails loudly, telling how to install it; tests are never
//! skipped silently.

use std::fs;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Ports tried before giving up.
const START_ATTEMPTS: usize = 5;
/// How long a broker may take to accept connections.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Problems starting a service.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// No mosquitto binary.
    #[error(
        "mosquitto not found in /usr/sbin or PATH: run scripts/test, which installs Debian's mosquitto"
    )]
    NotInstalled,
    /// No PostgreSQL server binaries (or no `postgres` user to run them as root).
    #[error(
        "PostgreSQL not found under /usr/lib/postgresql: run scripts/test, which installs Debian's postgresql"
    )]
    PostgresNotInstalled,
    /// PostgreSQL's initdb failed or its server never accepted connections.
    #[error("PostgreSQL did not start on port {port}: {log}")]
    PostgresNotReady {
        /// The port it was given (0: initdb failed).
        port: u16,
        /// Its log.
        log: String,
    },
    /// File or process I/O failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: io::Error,
    },
    /// No headless browser.
    #[error("chromium not found ({0}): run scripts/test, which installs Debian's chromium")]
    BrowserNotInstalled(io::Error),
    /// The browser failed on a page, took too long, or gave no result.
    #[error("chromium on {url}: {reason}")]
    Browser {
        /// The page.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The broker exited or never accepted connections.
    #[error("mosquitto did not start on port {port}: {log}")]
    NotReady {
        /// The port it was given.
        port: u16,
        /// Its log.
        log: String,
    },
}

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> HarnessError {
    let context = context.into();
    move |source| HarnessError::Io { context, source }
}

/// A running mosquitto.
#[derive(Debug)]
pub struct Mosquitto {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

fn mosquitto_binary() -> Option<PathBuf> {
    let sbin = PathBuf::from("/usr/sbin/mosquitto");
    if sbin.is_file() {
        return Some(sbin);
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join("mosquitto"))
        .find(|p| p.is_file())
}

/// A port that was free a moment ago (bound to port 0, then released).
pub(crate) fn free_port() -> Result<u16, HarnessError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io_err("binding a free port"))?;
    Ok(listener
        .local_addr()
        .map_err(io_err("reading the bound port"))?
        .port())
}

impl Mosquitto {
    /// Starts a broker with persistence on, anonymous access, listening on 127.0.0.1 only.
    ///
    /// # Errors
    /// [`HarnessError::NotInstalled`] without mosquitto; [`HarnessError::NotReady`] if it
    /// does not accept connections within 10 s (its log is included).
    pub fn start() -> Result<Self, HarnessError> {
        Self::start_with("allow_anonymous true\n")
    }

    /// Starts a broker whose access settings are `access` (mosquitto.conf lines such as
    /// `allow_anonymous false`, `password_file …`, `acl_file …`) instead of anonymous
    /// access.
    ///
    /// # Errors
    /// As [`Mosquitto::start`].
    pub fn start_with(access: &str) -> Result<Self, HarnessError> {
        Self::start_configured(access, true)
    }

    /// Starts an anonymous broker that keeps nothing on disk (`persistence false`): after
    /// a restart it knows no session and no queued message.
    ///
    /// # Errors
    /// As [`Mosquitto::start`].
    pub fn start_ephemeral() -> Result<Self, HarnessError> {
        Self::start_configured("allow_anonymous true\n", false)
    }

    fn start_configured(access: &str, persistence: bool) -> Result<Self, HarnessError> {
        // A free port can be taken by someone else between our probe and mosquitto's bind
        // (tests start brokers in parallel): then this broker exits, and we try another.
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            match Self::start_once(access, persistence) {
                Ok(broker) => return Ok(broker),
                Err(e @ HarnessError::NotReady { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(HarnessError::NotInstalled))
    }

    fn start_once(access: &str, persistence: bool) -> Result<Self, HarnessError> {
        let binary = mosquitto_binary().ok_or(HarnessError::NotInstalled)?;
        let dir = tempfile::tempdir().map_err(io_err("creating the broker directory"))?;
        let port = free_port()?;
        let data = dir.path().join("data");
        fs::create_dir(&data).map_err(io_err("creating the broker data directory"))?;
        let config = format!(
            "# written by warble-tests\n\
             listener {port} 127.0.0.1\n\
             {access}\
             persistence {persistence}\n\
             # save every second, not only at a clean shutdown: a crash loses at most 1 s\n\
             autosave_interval 1\n\
             persistence_location {}/\n\
             log_dest file {}\n\
             log_type all\n\
             # when the tests run as root, keep root instead of switching to user mosquitto\n\
             user root\n",
            data.display(),
            dir.path().join("mosquitto.log").display(),
        );
        let conf_path = dir.path().join("mosquitto.conf");
        fs::write(&conf_path, config).map_err(io_err("writing mosquitto.conf"))?;
        let child = Command::new(binary)
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io_err("starting mosquitto"))?;
        let mut broker = Self { child, port, dir };
        broker.wait_ready()?;
        Ok(broker)
    }

    /// Ready means: this mosquitto is alive, its log says it listens on our port, and the
    /// port accepts connections (a connection alone could reach another process).
    fn wait_ready(&mut self) -> Result<(), HarnessError> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let listening = format!("listen socket on port {}.", self.port);
        while Instant::now() < deadline {
            if let Ok(Some(_status)) = self.child.try_wait() {
                break;
            }
            if self.log().contains(&listening)
                && TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200)).is_ok()
                && matches!(self.child.try_wait(), Ok(None))
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(HarnessError::NotReady {
            port: self.port,
            log: self.log(),
        })
    }

    /// Stops the broker gracefully (SIGTERM: it saves its persistent sessions), as in a
    /// broker outage; [`Mosquitto::restart`] brings it back on the same port.
    ///
    /// # Errors
    /// The signal could not be sent.
    pub fn stop(&mut self) -> Result<(), HarnessError> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .map_err(io_err("sending SIGTERM to mosquitto"))?;
        if !status.success() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        Ok(())
    }

    /// Kills the broker without warning (SIGKILL), as in a crash or power cut: what it
    /// had not saved is gone. [`Mosquitto::restart`] brings it back.
    ///
    /// # Errors
    /// The process could not be killed.
    pub fn kill(&mut self) -> Result<(), HarnessError> {
        self.child
            .kill()
            .map_err(io_err("sending SIGKILL to mosquitto"))?;
        let _ = self.child.wait();
        Ok(())
    }

    /// Starts the stopped broker again with the same configuration, port and data.
    ///
    /// # Errors
    /// As [`Mosquitto::start`] (the port may have been taken meanwhile).
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        let binary = mosquitto_binary().ok_or(HarnessError::NotInstalled)?;
        self.child = Command::new(binary)
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io_err("restarting mosquitto"))?;
        self.wait_ready()
    }

    /// The broker's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The broker's process id (to signal it, e.g. SIGHUP to reload its files).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The broker's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
