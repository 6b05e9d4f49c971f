//! Fleets: one `fleet.toml` (defaults and groups, each any part of a station file) and an
//! inventory of stations (CSV or TOML) rendered into a deployable folder per station:
//! `station.toml`, the trusted keys it names, a hardened systemd unit and an install
//! manifest. Rendering is deterministic (sorted keys, no timestamps) and every rendered
//! station file is validated before anything is written.
//!
//! Precedence, lowest first: `[defaults]`, `[groups.<group>]`, the station's own
//! `overrides`, then its id, name and coordinates from the inventory.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use toml::{Table, Value};

use warble_core::wire::{HA_DISCOVERY_PREFIX, Leaf, StationId, ha_discovery_filter};

use crate::problem::{Problem, Problems, problem};

/// `fleet.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fleet {
    /// Fleet settings.
    pub fleet: FleetInfo,
    /// Station-file content every station starts from.
    #[serde(default)]
    pub defaults: Table,
    /// Station-file content per group, over the defaults.
    #[serde(default)]
    pub groups: BTreeMap<String, Table>,
    /// The broker's side (rendered into `broker/`).
    #[serde(default)]
    pub broker: crate::mosquitto::BrokerSide,
}

/// `[fleet]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetInfo {
    /// Fleet name.
    pub name: String,
    /// Where the agent's files live on a recorder (default `/etc/warble`).
    #[serde(default = "default_etc")]
    pub config_dir: PathBuf,
    /// The agent binary on a recorder.
    #[serde(default = "default_bin")]
    pub agent_bin: PathBuf,
    /// The system user the agent runs as.
    #[serde(default = "default_user")]
    pub user: String,
    /// Broker user that may publish bundles (and read everything).
    #[serde(default = "default_operator")]
    pub operator_user: String,
    /// Broker user of the collectors (reads detections, status, heartbeats).
    #[serde(default = "default_collector")]
    pub collector_user: String,
    /// Broker user of Home Assistant: reads the stations' discovery configs and the
    /// topics they point at (status, heartbeat, detections), and writes its own birth
    /// message (`homeassistant/status`).
    #[serde(default = "default_home_assistant")]
    pub home_assistant_user: String,
    /// Folder (relative to `fleet.toml`) of the fleet's secrets: `<user>.credentials`
    /// (`<user>:<password>`) for every station and role, `ca.crt` when the broker's
    /// certificate is not publicly trusted, `<station>.crt` and `<station>.key` with
    /// mutual TLS. Kept out of the fleet file, which can then be shared.
    #[serde(default)]
    pub secrets: Option<PathBuf>,
    /// The model bundle every station starts with (relative to `fleet.toml`), installed
    /// where its `model.bundle` says.
    #[serde(default)]
    pub bundle: Option<PathBuf>,
    /// Stations log in to the broker with client certificates too.
    #[serde(default)]
    pub mutual_tls: bool,
}

fn default_home_assistant() -> String {
    "homeassistant".into()
}

fn default_operator() -> String {
    "operator".into()
}

fn default_collector() -> String {
    "collector".into()
}

fn default_etc() -> PathBuf {
    PathBuf::from("/etc/warble")
}

fn default_bin() -> PathBuf {
    PathBuf::from(packaged::AGENT_BIN)
}

fn default_user() -> String {
    "warble".into()
}

/// One inventory row.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StationEntry {
    /// Station id.
    pub id: String,
    /// Group (a key of `[groups]`).
    pub group: String,
    /// Latitude.
    #[serde(default)]
    pub latitude: Option<f64>,
    /// Longitude.
    #[serde(default)]
    pub longitude: Option<f64>,
    /// Human name.
    #[serde(default)]
    pub name: Option<String>,
    /// Station-file content for this station only (TOML inventories).
    #[serde(default)]
    pub overrides: Table,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlInventory {
    station: Vec<StationEntry>,
}

/// What [`render`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// Station ids, in inventory order.
    pub stations: Vec<String>,
}

fn merge(into: &mut Table, from: &Table) {
    for (k, v) in from {
        match (into.get_mut(k), v) {
            (Some(Value::Table(a)), Value::Table(b)) => merge(a, b),
            _ => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Reads an inventory: `.csv` with columns `id,group,latitude,longitude[,name]`, or
/// `.toml` with `[[station]]` tables (which may carry `overrides`).
///
/// # Errors
/// Every bad row, with its line.
pub fn read_inventory(path: &Path) -> Result<Vec<StationEntry>, Problems> {
    let text = warble_core::files::read_small_text(path).map_err(|e| {
        Problems(vec![problem(
            path,
            None,
            "",
            format!("cannot read the file: {e}"),
        )])
    })?;
    if path.extension().is_some_and(|e| e == "toml") {
        return toml::from_str::<TomlInventory>(&text)
            .map(|i| i.station)
            .map_err(|e| {
                let at = e.span().map(|s| crate::problem::line_col(&text, s.start));
                Problems(vec![problem(
                    path,
                    at,
                    "",
                    e.message().trim().replace('\n', " "),
                )])
            });
    }
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| Problems(vec![problem(path, Some((1, 1)), "", e.to_string())]))?
        .clone();
    for required in ["id", "group"] {
        if !headers.iter().any(|h| h == required) {
            problems.push(problem(path, Some((1, 1)), "", format!("the header has no `{required}` column (columns: id,group,latitude,longitude,name)")));
        }
    }
    if !problems.is_empty() {
        return Err(Problems(problems));
    }
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                problems.push(problem(path, Some((line, 1)), "", e.to_string()));
                continue;
            }
        };
        let field = |name: &str| {
            headers
                .iter()
                .position(|h| h == name)
                .and_then(|c| record.get(c))
                .filter(|v| !v.is_empty())
        };
        let number = |name: &str, problems: &mut Vec<Problem>| -> Option<f64> {
            let v = field(name)?;
            v.parse()
                .map_err(|_| {
                    problems.push(problem(
                        path,
                        Some((line, 1)),
                        name,
                        format!("`{v}` is not a number"),
                    ))
                })
                .ok()
        };
        let (latitude, longitude) = (
            number("latitude", &mut problems),
            number("longitude", &mut problems),
        );
        rows.push(StationEntry {
            id: field("id").unwrap_or_default().to_owned(),
            group: field("group").unwrap_or_default().to_owned(),
            latitude,
            longitude,
            name: field("name").map(str::to_owned),
            overrides: Table::new(),
        });
    }
    if problems.is_empty() {
        Ok(rows)
    } else {
        Err(Problems(problems))
    }
}

/// The station file of `entry` within `fleet`, as a TOML table.
pub fn station_table(fleet: &Fleet, entry: &StationEntry) -> Table {
    let mut t = fleet.defaults.clone();
    if let Some(g) = fleet.groups.get(&entry.group) {
        merge(&mut t, g);
    }
    merge(&mut t, &entry.overrides);
    let mut station = Table::new();
    station.insert("id".into(), Value::String(entry.id.clone()));
    // The group its model updates may come from (`<prefix>/fleet/<group>/bundle`).
    station.insert("group".into(), Value::String(entry.group.clone()));
    if let Some(n) = &entry.name {
        station.insert("name".into(), Value::String(n.clone()));
    }
    if let Some(v) = entry.latitude {
        station.insert("latitude".into(), Value::Float(v));
    }
    if let Some(v) = entry.longitude {
        station.insert("longitude".into(), Value::Float(v));
    }
    let mut top = Table::new();
    top.insert("station".into(), Value::Table(station));
    merge(&mut t, &top);
    t
}

/// Where Warble's Debian package puts the agent and where its unit looks for the station.
pub mod packaged {
    /// The agent binary.
    pub const AGENT_BIN: &str = "/usr/bin/warble-agent";
    /// The station's folder (`ConfigurationDirectory=warble`).
    pub const CONFIG_DIR: &str = "/etc/warble";
    /// The agent's data folder (`StateDirectory=warble`).
    pub const DATA_DIR: &str = "/var/lib/warble";
    /// The system user (created by the package from its sysusers file).
    pub const USER: &str = "warble";
}

/// The agent's hardened systemd unit, as the package installs it
/// (`/usr/lib/systemd/system/warble-agent.service`, `agent/debian/warble-agent.service`; a
/// test holds the two equal). A station's own values come as a drop-in over it
/// ([`station_dropin`]), so a package upgrade that changes the unit reaches every
/// station.
pub fn packaged_unit() -> String {
    let mut unit = String::new();
    let _ = write!(
        unit,
        "# Installed by the warble-agent package; a station's own values (rendered by\n\
         # warble-config) are in /etc/systemd/system/warble-agent.service.d/station.conf.\n\
         [Unit]\n\
         Description=Warble recorder agent\n\
         Documentation=file:///usr/share/doc/warble-agent/install.md\n\
         Wants=network-online.target\n\
         # After the clock is set where a time-sync service provides the target (enable\n\
         # systemd-time-wait-sync.service on a recorder without a real-time clock).\n\
         After=network-online.target sound.target time-sync.target\n\
         # Not started before a station file is in place (the package ships an example).\n\
         ConditionPathExists={config}\n\
         # Never give up restarting: an unattended station has nobody to reset it (the\n\
         # agent itself waits for a microphone that appears late).\n\
         StartLimitIntervalSec=0\n\
         \n\
         [Service]\n\
         # Ready once capturing; restarted if its loop stops pinging the watchdog.\n\
         Type=notify\n\
         NotifyAccess=main\n\
         WatchdogSec=60\n\
         User={user}\n\
         Group={user}\n\
         SupplementaryGroups=audio\n\
         ExecStart={bin} run --config {config}\n\
         Restart=always\n\
         RestartSec=5\n\
         TimeoutStartSec=300\n\
         TimeoutStopSec=30\n\
         # /var/lib/warble, owned by the agent's user, and /etc/warble, read-only to it.\n\
         StateDirectory=warble\n\
         StateDirectoryMode=0750\n\
         ConfigurationDirectory=warble\n\
         # A runaway must not take the recorder down with it.\n\
         MemoryHigh=384M\n\
         MemoryMax=512M\n\
         # Hardening: the agent writes only its data folder.\n\
         ProtectSystem=strict\n\
         ProtectHome=true\n\
         PrivateTmp=true\n\
         NoNewPrivileges=true\n\
         CapabilityBoundingSet=\n\
         AmbientCapabilities=\n\
         ProtectKernelTunables=true\n\
         ProtectKernelModules=true\n\
         ProtectKernelLogs=true\n\
         ProtectControlGroups=true\n\
         ProtectClock=true\n\
         ProtectHostname=true\n\
         RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK\n\
         RestrictNamespaces=true\n\
         RestrictRealtime=true\n\
         RestrictSUIDSGID=true\n\
         LockPersonality=true\n\
         SystemCallArchitectures=native\n\
         SystemCallFilter=@system-service\n\
         UMask=0027\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        user = packaged::USER,
        bin = packaged::AGENT_BIN,
        config = Path::new(packaged::CONFIG_DIR)
            .join("station.toml")
            .display(),
    );
    unit
}

/// A station's drop-in over [`packaged_unit`]
/// (`/etc/systemd/system/warble-agent.service.d/station.conf`): its name in the unit's
/// description, and only where the fleet departs from the package's places, the user,
/// the binary, the station file and the folders the agent may write.
pub fn station_dropin(info: &FleetInfo, station: &crate::StationConfig) -> String {
    let id = station.id.as_str();
    let mut unit = format!(
        "# Rendered by warble-config for station {id}; edit fleet.toml, not this file.\n\
         [Unit]\n\
         Description=Warble recorder agent (station {id})\n"
    );
    let config = info.config_dir.join("station.toml");
    let mut service = String::new();
    if info.user != packaged::USER {
        let _ = write!(service, "User={0}\nGroup={0}\n", info.user);
    }
    if info.agent_bin != Path::new(packaged::AGENT_BIN)
        || info.config_dir != Path::new(packaged::CONFIG_DIR)
    {
        if info.config_dir != Path::new(packaged::CONFIG_DIR) {
            // The empty assignment drops the package's condition (conditions add up).
            let _ = writeln!(
                unit,
                "ConditionPathExists=\nConditionPathExists={}",
                config.display()
            );
        }
        let _ = write!(
            service,
            "ExecStart=\nExecStart={} run --config {}\n",
            info.agent_bin.display(),
            config.display()
        );
    }
    let mut writable: Vec<&Path> = vec![&station.data_dir, &station.output_dir];
    if let Some(u) = &station.updates {
        writable.push(&u.slot_dir);
    }
    writable.retain(|p| !p.starts_with(packaged::DATA_DIR));
    writable.sort();
    writable.dedup_by(|a, b| a.starts_with(b));
    for path in writable {
        let _ = writeln!(service, "ReadWritePaths={}", path.display());
    }
    if !service.is_empty() {
        let _ = write!(unit, "\n[Service]\n{service}");
    }
    unit
}

/// A file of a rendered folder: its path inside the folder, content and mode. Shared:
/// every station's folder holds the fleet's bundle, read once.
type FolderFile = (String, Arc<[u8]>, u32);

/// A station's folder before it is written.
struct Plan {
    id: String,
    group: String,
    station_text: String,
    files: Vec<FolderFile>,
    /// Where the initial bundle goes on the recorder (`model.bundle` as written).
    bundle_at: PathBuf,
    /// The broker password, when it delivers over MQTT.
    password: Option<String>,
}

/// The secrets a station's folder takes from `fleet.secrets`, refusing any it lacks.
struct Secrets<'a> {
    dir: Option<PathBuf>,
    fleet_file: &'a Path,
}

impl Secrets<'_> {
    /// The file `name` of the secrets folder.
    fn read(&self, name: &str, why: &str) -> Result<Vec<u8>, Problem> {
        let Some(dir) = &self.dir else {
            return Err(problem(
                self.fleet_file,
                None,
                "fleet.secrets",
                format!(
                    "{why}: name the folder of the fleet's secrets (`warble-config secrets` creates its credentials)"
                ),
            ));
        };
        let path = dir.join(name);
        warble_core::files::read_limited(&path, warble_core::files::SMALL_FILE_LIMIT).map_err(|e| {
            problem(
                self.fleet_file,
                None,
                "fleet.secrets",
                if name.ends_with(".credentials") {
                    format!(
                        "{why}: cannot read {}: {e} (`warble-config secrets` creates the missing credentials)",
                        path.display()
                    )
                } else {
                    format!("{why}: cannot read {}: {e}", path.display())
                },
            )
        })
    }

    /// The password in `<user>.credentials`.
    fn password(&self, user: &str, why: &str) -> Result<(Vec<u8>, String), Problem> {
        let bytes = self.read(&format!("{user}.credentials"), why)?;
        let text = String::from_utf8_lossy(&bytes);
        match crate::mosquitto::password_of(&text, user) {
            Ok(pass) => {
                let pass = pass.to_owned();
                Ok((bytes, pass))
            }
            Err(e) => Err(problem(
                self.fleet_file,
                None,
                "fleet.secrets",
                format!("{why}: {user}.credentials {e}"),
            )),
        }
    }

    fn has(&self, name: &str) -> bool {
        self.dir.as_ref().is_some_and(|d| d.join(name).is_file())
    }
}

/// A file name copied into a rendered folder: plain, so that it is safe in `install.sh`.
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Renders every station of `inventory` into `out/<id>/` — everything the station needs:
/// `station.toml`, its trusted keys, its broker credentials and TLS files, the fleet's
/// initial model bundle, the unit's drop-in, `install.sh` and `install.txt` — and the
/// broker's side into `out/broker/`: `warble.conf`, `passwd`, `acl` and `install.txt`.
///
/// # Errors
/// Every problem of every station (nothing is written unless all are valid: a station
/// whose credentials or certificates are missing is refused, not rendered with holes), or
/// an unwritable output folder.
pub fn render(
    fleet_file: &Path,
    inventory: &[StationEntry],
    out: &Path,
) -> Result<Rendered, Problems> {
    let text = warble_core::files::read_small_text(fleet_file).map_err(|e| {
        Problems(vec![problem(
            fleet_file,
            None,
            "",
            format!("cannot read the file: {e}"),
        )])
    })?;
    let fleet: Fleet = toml::from_str(&text).map_err(|e| {
        let at = e.span().map(|s| crate::problem::line_col(&text, s.start));
        Problems(vec![problem(
            fleet_file,
            at,
            "",
            e.message().trim().replace('\n', " "),
        )])
    })?;
    let base = fleet_file.parent().unwrap_or(Path::new("."));
    let info = &fleet.fleet;
    let secrets = Secrets {
        dir: info.secrets.as_ref().map(|d| base.join(d)),
        fleet_file,
    };
    let mut problems = names_problems(fleet_file, &fleet, inventory);
    let limits = warble_core::bundle::Limits::default();
    let bundle = match &info.bundle {
        None => Err(problem(
            fleet_file,
            None,
            "fleet.bundle",
            "name the model bundle every station starts with (a station without it would not start)",
        )),
        Some(b) => warble_core::files::read_limited(&base.join(b), limits.max_bundle_bytes)
            .map_err(|e| {
                problem(
                    fleet_file,
                    None,
                    "fleet.bundle",
                    format!("cannot read {}: {e}", base.join(b).display()),
                )
            }),
    };
    let bundle: Option<Arc<[u8]>> = bundle.map_err(|p| problems.push(p)).ok().map(Arc::from);
    // The bundle is checked once per set of trusted keys (stations of a fleet mostly share
    // one), not once per station.
    let mut verdicts = BTreeMap::new();
    let mut seen = BTreeMap::new();
    let mut plans = Vec::new();
    for entry in inventory {
        if seen.insert(entry.id.clone(), ()).is_some() {
            problems.push(problem(
                fleet_file,
                None,
                "",
                format!("station `{}` is listed twice in the inventory", entry.id),
            ));
            continue;
        }
        if !fleet.groups.contains_key(&entry.group) {
            let known: Vec<&str> = fleet.groups.keys().map(String::as_str).collect();
            let mut p = problem(
                fleet_file,
                None,
                "",
                format!(
                    "station `{}`: no group `{}` in [groups] ({})",
                    entry.id,
                    entry.group,
                    known.join(", ")
                ),
            );
            p.suggestion = crate::problem::near_miss(&entry.group, known.iter().copied());
            problems.push(p);
            continue;
        }
        match plan_station(
            &fleet,
            entry,
            base,
            &secrets,
            (bundle.as_ref(), &limits, &mut verdicts),
        ) {
            Ok(plan) => plans.push(plan),
            Err(p) => problems.extend(p),
        }
    }
    let staging = tempfile_dir(out).map_err(|e| Problems(vec![problem(out, None, "", e)]))?;
    let mut rendered = Vec::new();
    // (station, group, topic prefix if it delivers over MQTT), for the broker's ACL.
    let mut access: Vec<(String, String, Option<String>)> = Vec::new();
    let mut listeners = BTreeSet::new();
    let mut passwords = Vec::new();
    for plan in &plans {
        let dir = staging.join(&plan.id);
        let mut files = plan.files.clone();
        files.push((
            "station.toml".into(),
            plan.station_text.clone().into_bytes().into(),
            0o644,
        ));
        if let Err(e) = write_files(&dir, &files) {
            problems.push(problem(out, None, "", e));
            continue;
        }
        // validate(render(x)): the written file must pass the station checks.
        let cfg = match crate::load(&dir.join("station.toml")) {
            Ok(cfg) => cfg,
            Err(p) => {
                problems.extend(p.0.into_iter().map(|mut p| {
                    p.message = format!("station `{}` (rendered): {}", plan.id, p.message);
                    p
                }));
                continue;
            }
        };
        let dropin = station_dropin(info, &cfg);
        let placements = placements(info, plan, &files, &dropin);
        let mut agent_dirs = vec![cfg.data_dir.clone(), cfg.output_dir.clone()];
        agent_dirs.extend(cfg.updates.as_ref().map(|u| u.slot_dir.clone()));
        agent_dirs.extend(plan.bundle_at.parent().map(Path::to_path_buf));
        agent_dirs.sort();
        agent_dirs.dedup();
        let target = crate::install::Target {
            station: &plan.id,
            fleet: &info.name,
            user: &info.user,
            station_file: info.config_dir.join("station.toml"),
            agent_dirs,
        };
        let extra: Vec<FolderFile> = vec![
            (DROPIN.into(), dropin.into_bytes().into(), 0o644),
            (
                "install.txt".into(),
                crate::install::manifest(&placements).into_bytes().into(),
                0o644,
            ),
            (
                "install.sh".into(),
                crate::install::script(&target, &placements)
                    .into_bytes()
                    .into(),
                0o755,
            ),
        ];
        if let Err(e) = write_files(&dir, &extra) {
            problems.push(problem(out, None, "", e));
        }
        let prefix = cfg.mqtt.as_ref().map(|m| {
            listeners.insert((m.port, m.tls));
            m.topic_prefix.as_str().to_owned()
        });
        if let Some(pass) = &plan.password {
            passwords.push((plan.id.clone(), pass.clone()));
        }
        access.push((plan.id.clone(), plan.group.clone(), prefix));
        rendered.push(plan.id.clone());
    }
    let broker = broker_files(&fleet, &secrets, &access, &listeners, passwords)
        .map_err(|p| problems.extend(p))
        .ok();
    if let Some(files) = &broker
        && let Err(e) = write_files(&staging.join("broker"), files)
    {
        problems.push(problem(out, None, "", e));
    }
    if !problems.is_empty() {
        let _ = fs::remove_dir_all(&staging);
        return Err(Problems(problems));
    }
    for id in rendered.iter().chain(std::iter::once(&"broker".to_owned())) {
        let (from, to) = (staging.join(id), out.join(id));
        let _ = fs::remove_dir_all(&to);
        fs::rename(&from, &to)
            .map_err(|e| Problems(vec![problem(&to, None, "", e.to_string())]))?;
    }
    let _ = fs::remove_dir_all(&staging);
    Ok(Rendered { stations: rendered })
}

/// Creates, in the fleet's secrets folder, a credentials file with a fresh random
/// password for every broker user that has none yet (the roles and every station):
/// existing files are kept, so this is safe to run after adding stations. Returns the
/// users given a new password.
///
/// # Errors
/// An unreadable fleet file, no `fleet.secrets`, or a file that cannot be written.
pub fn create_secrets(
    fleet_file: &Path,
    inventory: &[StationEntry],
) -> Result<Vec<String>, Problems> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let one = |at: &Path, key: &str, e: String| Problems(vec![problem(at, None, key, e)]);
    let text = warble_core::files::read_small_text(fleet_file)
        .map_err(|e| one(fleet_file, "", format!("cannot read the file: {e}")))?;
    let fleet: Fleet = toml::from_str(&text)
        .map_err(|e| one(fleet_file, "", e.message().trim().replace('\n', " ")))?;
    let info = &fleet.fleet;
    let Some(dir) = &info.secrets else {
        return Err(one(
            fleet_file,
            "fleet.secrets",
            "name the folder for the fleet's secrets first (e.g. secrets = \"secrets\")".into(),
        ));
    };
    let dir = fleet_file.parent().unwrap_or(Path::new(".")).join(dir);
    fs::create_dir_all(&dir).map_err(|e| one(&dir, "", e.to_string()))?;
    let users = [
        &info.operator_user,
        &info.collector_user,
        &info.home_assistant_user,
    ]
    .into_iter()
    .cloned()
    .chain(inventory.iter().map(|e| e.id.clone()));
    let mut created = Vec::new();
    for user in users {
        if let Err(e) = warble_core::wire::check_user_name(&user) {
            return Err(one(fleet_file, "", e));
        }
        let path = dir.join(format!("{user}.credentials"));
        if path.exists() {
            continue;
        }
        let mut raw = [0u8; 18];
        getrandom::fill(&mut raw).map_err(|e| one(&path, "", format!("no randomness: {e}")))?;
        let password =
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, raw);
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| writeln!(f, "{user}:{password}"))
            .map_err(|e| one(&path, "", e.to_string()))?;
        created.push(user);
    }
    Ok(created)
}

/// Whether the fleet's bundle passes a station's checks, per set of trusted key files:
/// `Err((setting, what follows the station's name))`.
type Verdicts = BTreeMap<Vec<PathBuf>, Result<(), (&'static str, String)>>;

/// The unit drop-in's path in a station folder (and under `/etc/systemd/system`).
const DROPIN: &str = "warble-agent.service.d/station.conf";

/// A station's folder in memory: its station file with the copied files named relative
/// to it, its keys, credentials, TLS files and model bundle.
fn plan_station(
    fleet: &Fleet,
    entry: &StationEntry,
    base: &Path,
    secrets: &Secrets<'_>,
    (bundle, limits, verdicts): (
        Option<&Arc<[u8]>>,
        &warble_core::bundle::Limits,
        &mut Verdicts,
    ),
) -> Result<Plan, Vec<Problem>> {
    let info = &fleet.fleet;
    let id = &entry.id;
    let fleet_file = secrets.fleet_file;
    let mut problems = Vec::new();
    let mut table = station_table(fleet, entry);
    let mut files: Vec<FolderFile> = Vec::new();
    // Key files named in the fleet are copied next to the station file and named
    // relative to it, so the rendered folder is self-contained.
    let mut key_paths = Vec::new();
    let mut bundle_at = PathBuf::new();
    if let Some(Value::Table(model)) = table.get_mut("model") {
        if let Some(Value::Array(list)) = model.get_mut("trusted_keys") {
            for item in list.iter_mut() {
                let Value::String(path) = item else { continue };
                let src = base.join(&*path);
                let name = Path::new(path.as_str())
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if !plain_name(&name) {
                    problems.push(problem(
                        fleet_file,
                        None,
                        "model.trusted_keys",
                        format!(
                            "`{path}`: name key files with letters, digits, `.`, `_` and `-` only"
                        ),
                    ));
                    continue;
                }
                match warble_core::files::read_limited(&src, warble_core::files::SMALL_FILE_LIMIT) {
                    Ok(bytes) => files.push((format!("keys/{name}"), bytes.into(), 0o644)),
                    Err(e) => problems.push(problem(
                        fleet_file,
                        None,
                        "model.trusted_keys",
                        format!("station `{id}`: cannot read {}: {e}", src.display()),
                    )),
                }
                key_paths.push(src);
                *path = format!("keys/{name}");
            }
        }
        if let Some(Value::String(b)) = model.get("bundle") {
            bundle_at = info.config_dir.join(b);
        }
    }
    if let Some(bytes) = bundle {
        // The station must take the model it is installed with.
        let verdict = verdicts.entry(key_paths.clone()).or_insert_with(|| {
            let keys = warble_core::bundle::TrustedKeys::read_files(&key_paths)
                .map_err(|e| ("model.trusted_keys", format!(": {e}")))?;
            warble_core::bundle::Bundle::from_bytes(bytes, &keys, limits)
                .map(|_| ())
                .map_err(|e| {
                    (
                        "fleet.bundle",
                        format!(" would refuse the fleet's bundle: {e}"),
                    )
                })
        });
        match verdict {
            Ok(()) => files.push(("model.warble".into(), Arc::clone(bytes), 0o644)),
            Err((key, e)) => {
                problems.push(problem(fleet_file, None, key, format!("station `{id}`{e}")))
            }
        }
    }
    let mut password = None;
    if let Some(Value::Table(mqtt)) = table.get_mut("mqtt") {
        for key in ["credentials_file", "ca_file", "client_cert", "client_key"] {
            if mqtt.contains_key(key) {
                problems.push(problem(
                    fleet_file,
                    None,
                    &format!("mqtt.{key}"),
                    "each station's broker credentials and TLS files come from the fleet's secrets folder (fleet.secrets): remove this line",
                ));
            }
        }
        let why = format!("station `{id}` delivers over MQTT");
        match secrets.password(id, &why) {
            Ok((bytes, pass)) => {
                files.push(("credentials".into(), bytes.into(), 0o600));
                mqtt.insert(
                    "credentials_file".into(),
                    Value::String("credentials".into()),
                );
                password = Some(pass);
            }
            Err(p) => problems.push(p),
        }
        if secrets.has("ca.crt") {
            match secrets.read("ca.crt", &why) {
                Ok(bytes) => files.push(("tls/ca.crt".into(), bytes.into(), 0o644)),
                Err(p) => problems.push(p),
            }
            mqtt.insert("ca_file".into(), Value::String("tls/ca.crt".into()));
        }
        if info.mutual_tls {
            let why = format!("station `{id}`: the fleet uses mutual TLS (fleet.mutual_tls)");
            for (name, rel, key, mode) in [
                (format!("{id}.crt"), "tls/client.crt", "client_cert", 0o644),
                (format!("{id}.key"), "tls/client.key", "client_key", 0o600),
            ] {
                match secrets.read(&name, &why) {
                    Ok(bytes) => files.push((rel.into(), bytes.into(), mode)),
                    Err(p) => problems.push(p),
                }
                mqtt.insert(key.into(), Value::String(rel.into()));
            }
        }
    }
    let station_text = match toml::to_string_pretty(&table) {
        Ok(t) => format!(
            "# Station {id} of fleet {}: rendered by warble-config from fleet.toml; edit that.\n{t}",
            info.name
        ),
        Err(e) => {
            problems.push(problem(
                fleet_file,
                None,
                "",
                format!("station `{id}`: {e}"),
            ));
            String::new()
        }
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Plan {
        id: id.clone(),
        group: entry.group.clone(),
        station_text,
        files,
        bundle_at,
        password,
    })
}

/// Where each file of a station folder goes on the recorder: the configuration under
/// `fleet.config_dir` (secrets readable by the agent's group only), the bundle where the
/// station file names it (owned by the agent, which replaces it on updates), the drop-in
/// beside the packaged unit.
fn placements(
    info: &FleetInfo,
    plan: &Plan,
    files: &[FolderFile],
    dropin: &str,
) -> Vec<crate::install::Placement> {
    let user = &info.user;
    let mut list: Vec<crate::install::Placement> = files
        .iter()
        .map(|(rel, bytes, _)| {
            let (dest, mode, owner) = match rel.as_str() {
                "model.warble" => (plan.bundle_at.clone(), "0640", format!("{user}:{user}")),
                "station.toml" | "credentials" | "tls/client.key" => {
                    (info.config_dir.join(rel), "0640", format!("root:{user}"))
                }
                _ => (info.config_dir.join(rel), "0644", "root:root".to_owned()),
            };
            crate::install::Placement::new(rel, bytes, dest, mode, owner)
        })
        .collect();
    list.push(crate::install::Placement::new(
        DROPIN,
        dropin.as_bytes(),
        Path::new("/etc/systemd/system").join(DROPIN),
        "0644",
        "root:root".into(),
    ));
    list
}

/// `broker/`: the mosquitto fragment, the password file of every broker user, the ACL,
/// the CA when the fleet has one, and where each goes.
fn broker_files(
    fleet: &Fleet,
    secrets: &Secrets<'_>,
    access: &[(String, String, Option<String>)],
    listeners: &BTreeSet<(u16, bool)>,
    mut passwords: Vec<(String, String)>,
) -> Result<Vec<FolderFile>, Vec<Problem>> {
    let info = &fleet.fleet;
    let mut problems = Vec::new();
    let delivering = listeners.iter().copied().collect::<Vec<_>>();
    let Some(&(port, tls)) = delivering.first() else {
        return Ok(Vec::new());
    };
    if delivering.len() > 1 {
        problems.push(problem(
            secrets.fleet_file,
            None,
            "mqtt.broker",
            "the stations name brokers on different ports or with and without TLS: one fleet renders one broker",
        ));
    }
    for user in [
        &info.operator_user,
        &info.collector_user,
        &info.home_assistant_user,
    ] {
        match secrets.password(user, &format!("broker user `{user}`")) {
            Ok((_, pass)) => passwords.push((user.clone(), pass)),
            Err(p) => problems.push(p),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    passwords.sort();
    let mut passwd = String::new();
    for (user, pass) in &passwords {
        let _ = writeln!(
            passwd,
            "{}",
            crate::mosquitto::password_line(&info.name, user, pass)
        );
    }
    let has_ca = secrets.has("ca.crt");
    let listener = crate::mosquitto::Listener {
        port,
        tls,
        mutual_tls: info.mutual_tls,
        has_ca,
    };
    let mut files: Vec<FolderFile> = vec![
        (
            "warble.conf".into(),
            crate::mosquitto::conf(&info.name, &fleet.broker, listener)
                .into_bytes()
                .into(),
            0o644,
        ),
        ("passwd".into(), passwd.into_bytes().into(), 0o600),
        (
            "acl".into(),
            broker_acl(info, access).into_bytes().into(),
            0o644,
        ),
    ];
    if has_ca {
        let bytes = secrets
            .read("ca.crt", "the fleet's CA")
            .map_err(|p| vec![p])?;
        files.push(("ca.crt".into(), bytes.into(), 0o644));
    }
    let mut manifest = String::from(
        "# The broker's files, on the broker host (certfile and keyfile are the broker's own, placed there):\n# destination\tmode\towner\tsource\n",
    );
    for (name, _, _) in &files {
        // mosquitto reads its password file as its own user.
        let mode = if name == "passwd" {
            "0640\troot:mosquitto"
        } else {
            "0644\troot:root"
        };
        let _ = writeln!(
            manifest,
            "{}\t{mode}\t{name}",
            crate::mosquitto::destination(&fleet.broker, name).display()
        );
    }
    files.push(("install.txt".into(), manifest.into_bytes().into(), 0o644));
    Ok(files)
}

/// Writes `files` under `dir` with their modes.
fn write_files(dir: &Path, files: &[FolderFile]) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt as _;
    for (rel, bytes, mode) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        fs::write(&path, bytes)
            .and_then(|()| fs::set_permissions(&path, fs::Permissions::from_mode(*mode)))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// Names that become topic levels, broker users and ACL lines: group names, the operator
/// and collector users (valid, distinct, and no station's id — a station sharing a user
/// name would share its ACL section and rights).
fn names_problems(fleet_file: &Path, fleet: &Fleet, inventory: &[StationEntry]) -> Vec<Problem> {
    let mut problems = Vec::new();
    for group in fleet.groups.keys() {
        if let Err(e) = warble_core::wire::check_group(group) {
            problems.push(problem(fleet_file, None, "groups", e));
        }
    }
    let info = &fleet.fleet;
    let roles = [
        ("fleet.operator_user", &info.operator_user),
        ("fleet.collector_user", &info.collector_user),
        ("fleet.home_assistant_user", &info.home_assistant_user),
    ];
    for (key, user) in roles {
        if let Err(e) = warble_core::wire::check_user_name(user) {
            problems.push(problem(fleet_file, None, key, e));
        }
    }
    for (i, (key, user)) in roles.iter().enumerate() {
        if let Some((other, _)) = roles[..i].iter().find(|(_, u)| u == user) {
            problems.push(problem(
                fleet_file,
                None,
                key,
                format!("`{user}` is the user of {other} too: the roles need users of their own"),
            ));
        }
    }
    for entry in inventory {
        if roles.iter().any(|(_, user)| **user == entry.id) {
            problems.push(problem(
                fleet_file,
                None,
                "",
                format!(
                    "station `{}` has the broker user name of the fleet's operator, collectors or Home Assistant: rename the station",
                    entry.id
                ),
            ));
        }
    }
    problems
}

/// The mosquitto ACL (`acl_file`): each station (broker user = station id) may publish
/// only its own detections, status, heartbeat and model report (and its own Home
/// Assistant discovery configs), and read only its own and
/// its group's bundle and its own replay requests; the operator may publish bundles (and
/// read everything); collectors read what stations publish and may ask any station for
/// missing events (`replay`); Home Assistant reads the discovery configs and the status,
/// heartbeat and detections topics they point at. Anything not listed is denied.
pub fn broker_acl(info: &FleetInfo, access: &[(String, String, Option<String>)]) -> String {
    let mut prefixes: Vec<&str> = access.iter().filter_map(|(_, _, p)| p.as_deref()).collect();
    prefixes.sort_unstable();
    prefixes.dedup();
    let mut acl = format!(
        "# mosquitto ACL for fleet {}: rendered by warble-config; edit fleet.toml, not this file.\n\
         # Broker users: stations log in with their station id.\n\n",
        info.name
    );
    let _ = writeln!(acl, "user {}", info.operator_user);
    for p in &prefixes {
        let _ = writeln!(acl, "topic readwrite {p}/#");
    }
    let _ = writeln!(acl, "\nuser {}", info.collector_user);
    for p in &prefixes {
        for leaf in Leaf::STATION_PUBLISHES {
            let _ = writeln!(acl, "topic read {p}/+/{leaf}");
        }
        let _ = writeln!(acl, "topic write {p}/+/{}", Leaf::Replay);
    }
    let _ = writeln!(acl, "\nuser {}", info.home_assistant_user);
    let _ = writeln!(acl, "topic read {HA_DISCOVERY_PREFIX}/#");
    let _ = writeln!(acl, "topic write {HA_DISCOVERY_PREFIX}/status");
    for p in &prefixes {
        for leaf in [Leaf::Status, Leaf::Heartbeat, Leaf::Detections] {
            let _ = writeln!(acl, "topic read {p}/+/{leaf}");
        }
    }
    for (id, group, prefix) in access {
        let Some(p) = prefix else { continue };
        let _ = writeln!(acl, "\nuser {id}");
        for leaf in Leaf::STATION_PUBLISHES {
            let _ = writeln!(acl, "topic write {p}/{id}/{leaf}");
        }
        for leaf in Leaf::STATION_READS {
            let _ = writeln!(acl, "topic read {p}/{id}/{leaf}");
        }
        let _ = writeln!(acl, "topic read {p}/fleet/{group}/{}", Leaf::Bundle);
        // Its Home Assistant discovery configs (`mqtt.ha_discovery`).
        if let Ok(station) = StationId::new(id) {
            let _ = writeln!(acl, "topic write {}", ha_discovery_filter(&station));
        }
    }
    acl
}

fn tempfile_dir(out: &Path) -> Result<PathBuf, String> {
    fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let staging = out.join(".rendering");
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging).map_err(|e| format!("{}: {e}", staging.display()))?;
    Ok(staging)
}
