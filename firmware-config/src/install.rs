//! Where each file of a rendered station goes on its recorder, and the two renderings of
//! that one list: `install.txt` (destination, mode, owner, SHA-256) for a technician who
//! places files by hand, and `install.sh`, which checks the sums, places the files,
//! checks the station file and starts the agent.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// One file of a station folder and its place on the recorder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Path inside the station folder.
    pub source: String,
    /// Where it goes.
    pub destination: PathBuf,
    /// Octal mode.
    pub mode: &'static str,
    /// `user:group`.
    pub owner: String,
    /// SHA-256 of the content, hex.
    pub sha256: String,
}

impl Placement {
    /// `source` with `bytes`, placed at `destination`.
    pub fn new(
        source: &str,
        bytes: &[u8],
        destination: PathBuf,
        mode: &'static str,
        owner: String,
    ) -> Self {
        Self {
            source: source.to_owned(),
            destination,
            mode,
            owner,
            sha256: hex::encode(Sha256::digest(bytes)),
        }
    }
}

/// What `install.sh` needs beyond the files.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// Station id.
    pub station: &'a str,
    /// Fleet name.
    pub fleet: &'a str,
    /// The agent's system user.
    pub user: &'a str,
    /// The station file on the recorder.
    pub station_file: PathBuf,
    /// Folders the agent owns (data, model slots), created before the files.
    pub agent_dirs: Vec<PathBuf>,
}

/// `install.txt`.
pub fn manifest(files: &[Placement]) -> String {
    let mut lines = String::from("# destination\tmode\towner\tsha256\tsource\n");
    for p in files {
        let _ = writeln!(
            lines,
            "{}\t{}\t{}\t{}\t{}",
            p.destination.display(),
            p.mode,
            p.owner,
            p.sha256,
            p.source
        );
    }
    lines
}

/// Single-quoted for `sh` (every rendered path is checked to be plain, but a quote costs
/// nothing).
fn quoted(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// `install.sh`: run as root in the station folder on the recorder, optionally with the
/// `warble-agent` package file to install first.
pub fn script(target: &Target<'_>, files: &[Placement]) -> String {
    let user = target.user;
    let mut s = format!(
        "#!/bin/sh\n\
         # Station {station} of fleet {fleet}: rendered by warble-config; edit fleet.toml, not this file.\n\
         # On the recorder, as root, in this folder:\n\
         #   sudo sh install.sh [warble-agent_VERSION_ARCH.deb]\n\
         # installs the package (when given), checks every file of this folder against its\n\
         # SHA-256, places them (install.txt lists where), checks the station file, and\n\
         # enables and (re)starts the agent.\n\
         set -eu\n\
         cd \"$(dirname \"$0\")\"\n\
         if [ \"$(id -u)\" -ne 0 ]; then\n\
         \x20   echo \"install.sh: run as root (sudo sh install.sh)\" >&2\n\
         \x20   exit 1\n\
         fi\n\
         if [ $# -gt 0 ]; then\n\
         \x20   # Keep this station's files over the package's example on upgrades.\n\
         \x20   apt-get install -y -o Dpkg::Options::=--force-confold \"$(realpath \"$1\")\"\n\
         fi\n\
         if ! command -v warble-agent >/dev/null || ! command -v warble-config >/dev/null; then\n\
         \x20   echo \"install.sh: install the warble-agent package first, or name its .deb: sudo sh install.sh warble-agent_*.deb\" >&2\n\
         \x20   exit 1\n\
         fi\n\
         sha256sum --quiet --strict -c <<'SUMS'\n",
        station = target.station,
        fleet = target.fleet,
    );
    for p in files {
        let _ = writeln!(s, "{}  {}", p.sha256, p.source);
    }
    let _ = write!(
        s,
        "SUMS\n\
         if ! getent passwd {user} >/dev/null; then\n\
         \x20   useradd --system --user-group --groups audio --home-dir /nonexistent --shell /usr/sbin/nologin {user}\n\
         fi\n"
    );
    for dir in &target.agent_dirs {
        let _ = writeln!(s, "install -d -m 0750 -o {user} -g {user} {}", quoted(dir));
    }
    for p in files {
        let (owner, group) = p.owner.split_once(':').unwrap_or((&p.owner, &p.owner));
        let _ = writeln!(
            s,
            "install -D -m {} -o {owner} -g {group} {} {}",
            p.mode,
            p.source,
            quoted(&p.destination)
        );
    }
    let _ = write!(
        s,
        "warble-config validate {config}\n\
         if [ -d /run/systemd/system ]; then\n\
         \x20   systemctl daemon-reload\n\
         \x20   systemctl enable warble-agent.service\n\
         \x20   systemctl restart warble-agent.service\n\
         \x20   echo \"install.sh: station {station} installed and started; follow it with: journalctl -u warble-agent -f\"\n\
         else\n\
         \x20   echo \"install.sh: station {station} installed; systemd is not running here, start the agent with: systemctl enable --now warble-agent\"\n\
         fi\n",
        config = quoted(&target.station_file),
        station = target.station,
    );
    s
}
