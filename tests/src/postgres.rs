//! A real PostgreSQL server for tests: Debian's `postgresql` package (installed by
//! `scripts/install-deps`), a fresh cluster in a temporary directory (`initdb`, trust
//! authentication for user `warble`), listening on a free 127.0.0.1 port; stopped and
//! deleted when dropped. PostgreSQL refuses to run as root: when the tests run as root
//! (CI), the cluster belongs to the `postgres` system user and the server runs as it
//! (`setpriv`, which execs in place so that the child is the server itself).

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::broker::{HarnessError, free_port, io_err};

/// How long a fresh cluster may take to accept connections.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running PostgreSQL server; killed and deleted on drop.
#[derive(Debug)]
pub struct Postgres {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

/// `initdb` and `postgres` of the newest installed major version.
fn binaries() -> Option<(PathBuf, PathBuf)> {
    let mut versions: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").is_file() && bin.join("postgres").is_file())
        .collect();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok())
            .unwrap_or(0)
    });
    let bin = versions.pop()?;
    Some((bin.join("initdb"), bin.join("postgres")))
}

/// The uid and gid of the `postgres` system user.
fn postgres_user() -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("postgres:"))?;
    let mut fields = line.split(':').skip(2);
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

fn running_as_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// `program args…`, as the `postgres` user when we are root.
fn command(program: &Path, as_postgres: bool) -> Command {
    if as_postgres {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl Postgres {
    /// Creates a cluster and starts its server.
    ///
    /// # Errors
    /// [`HarnessError::PostgresNotInstalled`] without Debian's postgresql;
    /// [`HarnessError::PostgresNotReady`] if it does not accept connections in time (its
    /// log is included); I/O errors.
    pub fn start() -> Result<Self, HarnessError> {
        let (initdb, postgres) = binaries().ok_or(HarnessError::PostgresNotInstalled)?;
        let as_postgres = running_as_root();
        let dir = tempfile::tempdir().map_err(io_err("creating the database directory"))?;
        let data = dir.path().join("data");
        fs::create_dir(&data).map_err(io_err("creating the cluster directory"))?;
        if as_postgres {
            use std::os::unix::fs::PermissionsExt;
            let (uid, gid) = postgres_user().ok_or(HarnessError::PostgresNotInstalled)?;
            // The server must reach its directory: let it through ours, own its own.
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
                .map_err(io_err("opening the database directory"))?;
            std::os::unix::fs::chown(&data, Some(uid), Some(gid))
                .map_err(io_err("giving the cluster to user postgres"))?;
        }
        let log = dir.path().join("postgres.log");
        let status = command(&initdb, as_postgres)
            .args(["-D"])
            .arg(&data)
            .args([
                "-U",
                "warble",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).map_err(io_err("creating the log"))?)
            .status()
            .map_err(io_err("running initdb"))?;
        if !status.success() {
            return Err(HarnessError::PostgresNotReady {
                port: 0,
                log: fs::read_to_string(&log).unwrap_or_default(),
            });
        }
        let port = free_port()?;
        let child = command(&postgres, as_postgres)
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&data)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                // A test cluster: speed over durability (the collector's own durability
                // is the SQLite path's tests' business).
                "-c",
                "fsync=off",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).map_err(io_err("creating the log"))?)
            .spawn()
            .map_err(io_err("starting postgres"))?;
        let mut server = Self { child, port, dir };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&mut self) -> Result<(), HarnessError> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            if self.log().contains("ready to accept connections")
                && TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200)).is_ok()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(HarnessError::PostgresNotReady {
            port: self.port,
            log: self.log(),
        })
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// A connection URL for database `postgres` as user `warble`.
    pub fn url(&self) -> String {
        format!("postgres://warble@127.0.0.1:{}/postgres", self.port)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGQUIT: immediate shutdown, the server takes its backends with it.
        let _ = Command::new("kill")
            .args(["-QUIT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
