//! Fleets: one `fleet.toml` (defaults and groups, each any part of a station file) and an
//! inventory of stations (CSV or TOML) rendered into a deployable folder per station:
//! `station.toml`, the trusted keys it names, a hardened systemd unit and an install
//! manifest. Rendering is deterministic (sorted keys, no timestamps) and every rendered
//! station file is validated before anything is written.
//!
//! Precedence, lowest first: `[defaults]`, `[groups.<group>]`, the station's own
//! `overrides`, then its id, name and coordinates from the inventory.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};
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
    PathBuf::from("/usr/local/bin/warble-agent")
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

/// The hardened systemd unit for a station.
pub fn systemd_unit(info: &FleetInfo, station: &crate::StationConfig) -> String {
    let config = info.config_dir.join("station.toml");
    let mut unit = String::new();
    let _ = write!(
        unit,
        "# Rendered by warble-config for station {id}; edit fleet.toml, not this file.\n\
         [Unit]\n\
         Description=Warble recorder agent (station {id})\n\
         Wants=network-online.target\n\
         # After the clock is set where a time-sync service provides the target (enable\n\
         # systemd-time-wait-sync.service on a recorder without a real-time clock).\n\
         After=network-online.target sound.target time-sync.target\n\
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
         # A runaway must not take the recorder down with it.\n\
         MemoryHigh=384M\n\
         MemoryMax=512M\n\
         # Hardening: the agent writes only its data folder.\n\
         ProtectSystem=strict\n\
         ReadWritePaths={data}\n\
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
        id = station.id.as_str(),
        user = info.user,
        bin = info.agent_bin.display(),
        config = config.display(),
        data = station.data_dir.display(),
    );
    unit
}

/// Renders every station of `inventory` into `out/<id>/`.
///
/// # Errors
/// Every problem of every station (nothing is written unless all are valid), or an
/// unwritable output folder.
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
    let mut problems = names_problems(fleet_file, &fleet, inventory);
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
        let table = station_table(&fleet, entry);
        // Key files named in the fleet are copied next to the station file and named
        // relative to it, so the rendered folder is self-contained.
        let mut table = table;
        let mut keys = Vec::new();
        if let Some(Value::Table(model)) = table.get_mut("model")
            && let Some(Value::Array(list)) = model.get_mut("trusted_keys")
        {
            for item in list.iter_mut() {
                if let Value::String(path) = item {
                    let src = base.join(&*path);
                    let name = Path::new(path.as_str())
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    keys.push((src, name.clone()));
                    *path = format!("keys/{name}");
                }
            }
        }
        let station_text = match toml::to_string_pretty(&table) {
            Ok(t) => format!(
                "# Station {} of fleet {}: rendered by warble-config from fleet.toml; edit that.\n{t}",
                entry.id, fleet.fleet.name
            ),
            Err(e) => {
                problems.push(problem(
                    fleet_file,
                    None,
                    "",
                    format!("station `{}`: {e}", entry.id),
                ));
                continue;
            }
        };
        plans.push((entry.id.clone(), station_text, keys));
    }
    let staging = tempfile_dir(out).map_err(|e| Problems(vec![problem(out, None, "", e)]))?;
    let mut rendered = Vec::new();
    // (station, group, topic prefix if it delivers over MQTT), for the broker's ACL.
    let mut access: Vec<(String, String, Option<String>)> = Vec::new();
    for (id, station_text, keys) in &plans {
        let dir = staging.join(id);
        let write = |rel: &str, bytes: &[u8]| -> Result<(), String> {
            let path = dir.join(rel);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
            }
            fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))
        };
        let mut written: Vec<(String, Vec<u8>)> = Vec::new();
        for (src, name) in keys {
            match warble_core::files::read_limited(src, warble_core::files::SMALL_FILE_LIMIT) {
                Ok(bytes) => written.push((format!("keys/{name}"), bytes)),
                Err(e) => problems.push(problem(
                    fleet_file,
                    None,
                    "model.trusted_keys",
                    format!("station `{id}`: cannot read {}: {e}", src.display()),
                )),
            }
        }
        written.push(("station.toml".into(), station_text.clone().into_bytes()));
        for (rel, bytes) in &written {
            if let Err(e) = write(rel, bytes) {
                problems.push(problem(out, None, "", e));
            }
        }
        // validate(render(x)): the written file must pass the station checks.
        match crate::load(&dir.join("station.toml")) {
            Ok(cfg) => {
                let unit = systemd_unit(&fleet.fleet, &cfg);
                let manifest = install_manifest(&fleet.fleet, &written, &unit);
                for (rel, bytes) in [
                    ("warble-agent.service", unit.as_bytes()),
                    ("install.txt", manifest.as_bytes()),
                ] {
                    if let Err(e) = write(rel, bytes) {
                        problems.push(problem(out, None, "", e));
                    }
                }
                let group = inventory
                    .iter()
                    .find(|e| e.id == *id)
                    .map(|e| e.group.clone())
                    .unwrap_or_default();
                let prefix = cfg
                    .mqtt
                    .as_ref()
                    .map(|m| m.topic_prefix.as_str().to_owned());
                access.push((id.clone(), group, prefix));
                rendered.push(id.clone());
            }
            Err(p) => problems.extend(p.0.into_iter().map(|mut p| {
                p.message = format!("station `{id}` (rendered): {}", p.message);
                p
            })),
        }
    }
    if !problems.is_empty() {
        let _ = fs::remove_dir_all(&staging);
        return Err(Problems(problems));
    }
    let broker_dir = staging.join("broker");
    let acl_files = [
        ("acl", broker_acl(&fleet.fleet, &access)),
        ("users.txt", broker_users(&fleet.fleet, &access)),
    ];
    for (name, text) in &acl_files {
        let path = broker_dir.join(name);
        fs::create_dir_all(&broker_dir)
            .and_then(|()| fs::write(&path, text))
            .map_err(|e| Problems(vec![problem(&path, None, "", e.to_string())]))?;
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

/// Which broker users need a password (`mosquitto_passwd`), and how to set them.
fn broker_users(info: &FleetInfo, access: &[(String, String, Option<String>)]) -> String {
    let mut text = String::from(
        "# Broker users of this fleet. Create each with a password of its own:\n\
         #   mosquitto_passwd -c /etc/mosquitto/warble.passwd <first user>\n\
         #   mosquitto_passwd /etc/mosquitto/warble.passwd <user>\n\
         # and give each station its password in its mqtt.credentials_file (`<station id>:<password>`).\n\
         # mosquitto.conf: allow_anonymous false, password_file /etc/mosquitto/warble.passwd,\n\
         #                 acl_file /etc/mosquitto/warble.acl (this folder's `acl`),\n\
         #                 persistence true, and max_queued_messages 1000000: the default of\n\
         #                 1000 drops messages for a collector that falls behind a station\n\
         #                 emptying its outbox after an outage; set_tcp_nodelay true: without\n\
         #                 it acknowledgements wait ~40 ms and delivery slows to ~700 events/s.\n",
    );
    let _ = writeln!(
        text,
        "{}\n{}\n{}",
        info.operator_user, info.collector_user, info.home_assistant_user
    );
    for (id, _, prefix) in access {
        if prefix.is_some() {
            let _ = writeln!(text, "{id}");
        }
    }
    text
}

fn tempfile_dir(out: &Path) -> Result<PathBuf, String> {
    fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let staging = out.join(".rendering");
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging).map_err(|e| format!("{}: {e}", staging.display()))?;
    Ok(staging)
}

/// Where each rendered file goes on the recorder, with its mode and SHA-256.
fn install_manifest(info: &FleetInfo, files: &[(String, Vec<u8>)], unit: &str) -> String {
    let mut lines = String::from("# destination\tmode\towner\tsha256\tsource\n");
    let mut entries: Vec<(PathBuf, &str, String, String, &str)> = files
        .iter()
        .map(|(rel, bytes)| {
            let (mode, owner) = if rel.starts_with("keys/") {
                ("0644", "root:root".to_owned())
            } else {
                ("0640", format!("root:{}", info.user))
            };
            (
                info.config_dir.join(rel),
                mode,
                owner,
                hex(&Sha256::digest(bytes)),
                rel.as_str(),
            )
        })
        .collect();
    entries.push((
        PathBuf::from("/etc/systemd/system/warble-agent.service"),
        "0644",
        "root:root".into(),
        hex(&Sha256::digest(unit.as_bytes())),
        "warble-agent.service",
    ));
    for (dest, mode, owner, sum, src) in entries {
        let _ = writeln!(lines, "{}\t{mode}\t{owner}\t{sum}\t{src}", dest.display());
    }
    lines
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
