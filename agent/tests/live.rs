//! Live capture produces exactly the detections of file analysis on the same audio.
//!
//! No sound card here: the "microphone" is ALSA's file plugin reading raw samples, set up
//! with `ALSA_CONFIG_PATH` for the agent process only (the user's ALSA configuration is
//! never touched). The equality test feeds it through a FIFO at real-time pace and
//! `--max-samples` ends the run at the excerpt's last sample; the others read a plain file,
//! unpaced.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;
use common::{deliver_to, file_microphone, station};

use std::path::Path;
use std::process::Command;

use warble_core::event::Detection;

const SECONDS: usize = 30;

/// The agents these tests start read their file "microphone" unpaced, at full CPU: they
/// run one at a time so that none starves another's broker connection or timing.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn detection_ids(stdout: &[u8]) -> std::collections::BTreeSet<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str::<Detection>(l).unwrap().id)
        .collect()
}

/// `warble-agent run --config STATION ARGS…` with `alsa` as the ALSA configuration.
/// The samples of a `--record` file.
fn read_recording(path: &Path) -> Vec<f32> {
    hound::WavReader::open(path)
        .unwrap()
        .into_samples::<f32>()
        .map(Result::unwrap)
        .collect()
}

fn run_station(alsa: &Path, station: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_warble-agent"))
        .env("ALSA_CONFIG_PATH", alsa)
        .args(["run", "--config", station.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap()
}

/// `warble-agent run --config STATION --max-samples N` in the background with `env`, its
/// standard output piped and its standard error in `log`.
fn spawn_station(
    station: &Path,
    env: &[(&str, &Path)],
    max_samples: usize,
    log: &Path,
) -> common::Running {
    common::Running::new(
        Command::new(env!("CARGO_BIN_EXE_warble-agent"))
            .envs(env.iter().copied())
            .args(["run", "--config", station.to_str().unwrap()])
            .args(["--max-samples", &max_samples.to_string()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    )
}

#[test]
fn live_capture_detects_exactly_what_file_analysis_detects() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    // The first 30 s of the demo recording at the model's rate, as 16-bit samples: a WAV
    // for `analyze`, the same samples raw for the ALSA file "microphone".
    let wav = dir.path().join("excerpt.wav");
    let ints = common::write_wav_i16(&wav, &common::demo_excerpt(SECONDS));
    let floats: Vec<f32> = ints.iter().map(|&s| f32::from(s) / 32768.0).collect();
    // At real-time pace, as a sound card delivers it.
    let (alsa, _writer) = common::paced_microphone(dir.path(), floats, SECONDS as f64 + 10.0);

    let file_station = station(dir.path(), "file");
    let out = Command::new(env!("CARGO_BIN_EXE_warble-agent"))
        .args([
            "analyze",
            "--config",
            file_station.to_str().unwrap(),
            "--batch",
            "1",
            wav.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let from_file = common::detection_spans(&String::from_utf8_lossy(&out.stdout));
    assert!(from_file.len() >= 3, "{from_file:?}");

    let live_station = station(dir.path(), "live");
    let out = run_station(
        &alsa,
        &live_station,
        &["--max-samples", &ints.len().to_string()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{SECONDS}.0 s of audio")),
        "{stderr}"
    );
    assert!(stderr.contains("0 samples lost to overruns"), "{stderr}");
    let live = common::detection_spans(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(live, from_file, "live capture and file analysis agree");
    // Live detections are committed to the station's outbox for delivery.
    assert!(dir.path().join("data-live/outbox.sqlite").is_file());
}

/// `output.dir` and every one of `output.formats` have their effect on a station: each
/// detection lands in the day's file of each format, under the station's time zone.
/// (Before: no detection file was written on a station; only standard output, in the
/// first format.)
#[test]
fn a_station_writes_the_files_of_the_day_in_every_format() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let station = station(dir.path(), "files");
    let out_dir = dir.path().join("detections");
    let text = std::fs::read_to_string(&station).unwrap().replace(
        "[model]",
        &format!(
            "[output]\ndir = \"{}\"\nformats = [\"jsonl\", \"csv\", \"raven\", \"birdnet\"]\n\n[model]",
            out_dir.display()
        ),
    );
    let text = text.replacen("[station]\n", "[station]\ntimezone = \"UTC\"\n", 1);
    std::fs::write(&station, text).unwrap();
    let audio = common::demo_excerpt(12);
    let alsa = file_microphone(dir.path(), &audio);
    let out = run_station(
        &alsa,
        &station,
        &["--max-samples", &audio.len().to_string()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let events: Vec<Detection> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!events.is_empty(), "{stderr}");
    let days: std::collections::BTreeSet<String> = events
        .iter()
        .map(|e| e.start.format("%Y-%m-%d").to_string())
        .collect();
    let read = |day: &str, ext: &str| {
        std::fs::read_to_string(out_dir.join(format!("{day}.{ext}")))
            .unwrap_or_else(|e| panic!("{day}.{ext}: {e}"))
    };
    let mut in_files = Vec::new();
    let mut rows = [0usize; 3];
    for day in &days {
        in_files.extend(
            read(day, "jsonl")
                .lines()
                .map(|l| serde_json::from_str::<Detection>(l).unwrap().id),
        );
        for (n, ext) in rows.iter_mut().zip(["csv", "raven.txt", "birdnet.csv"]) {
            // A header, then a row per detection.
            *n += read(day, ext).lines().count() - 1;
        }
    }
    let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    assert_eq!(in_files, ids);
    assert_eq!(rows, [ids.len(); 3]);
    let first = &events[0];
    let csv = read(&first.start.format("%Y-%m-%d").to_string(), "csv");
    let midnight = first
        .start
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let offset = (first.start - midnight).as_seconds_f64();
    let start_s: f64 = csv
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (start_s - offset).abs() < 0.002,
        "times from the day's midnight ({offset:.3}): {csv}"
    );
}

/// `audio.channels` and `audio.gain_db` have their effect: a two-channel device is mixed
/// down to mono and the gain applied before anything else sees the audio (the `--record`
/// file holds what the pipeline gets).
#[test]
fn the_channels_are_mixed_down_and_the_gain_applied() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let station = station(dir.path(), "stereo");
    let text = std::fs::read_to_string(&station)
        .unwrap()
        .replace("[audio]\n", "[audio]\nchannels = 2\ngain_db = 6.0206\n");
    std::fs::write(&station, text).unwrap();
    // Interleaved left 0.3, right 0.1: mono 0.2, doubled by +6.02 dB.
    let frames = 32_000 * 2;
    let stereo: Vec<f32> = (0..frames).flat_map(|_| [0.3f32, 0.1]).collect();
    let alsa = file_microphone(dir.path(), &stereo);
    let recording = dir.path().join("check.wav");
    let out = run_station(
        &alsa,
        &station,
        &[
            "--max-samples",
            "32000",
            "--record",
            recording.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let recorded = read_recording(&recording);
    assert_eq!(recorded.len(), 32_000, "mono samples at the capture rate");
    assert!(
        recorded.iter().all(|&x| (x - 0.4).abs() < 1e-3),
        "{:?}",
        &recorded[..4]
    );
}

#[test]
fn a_missing_input_device_is_named() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let station = station(dir.path(), "nodev");
    let text = std::fs::read_to_string(&station)
        .unwrap()
        .replace("[audio]\n", "[audio]\ndevice = \"alsa:no-such-mic\"\n");
    std::fs::write(&station, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_warble-agent"))
        .args([
            "run",
            "--config",
            station.to_str().unwrap(),
            "--duration",
            "1",
        ])
        .output()
        .unwrap();
    // It waits for the device (for --duration here), saying why, then fails naming it.
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no input device `alsa:no-such-mic`"),
        "{stderr}"
    );
    assert!(stderr.contains("waiting for the audio device"), "{stderr}");
}

/// A USB microphone that enumerates after boot: the station waits for it with backoff
/// (saying so) instead of exiting until systemd gives up, and captures once it is there.
#[test]
fn a_microphone_that_appears_late_is_waited_for() {
    use std::time::{Duration, Instant};
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("mic.f32");
    let alsa = common::alsa_file_device(dir.path(), &raw);
    let station = station(dir.path(), "late");
    let log = dir.path().join("agent.log");
    let audio = common::demo_excerpt(SECONDS);
    let mut child = spawn_station(&station, &[("ALSA_CONFIG_PATH", &alsa)], audio.len(), &log);
    std::thread::sleep(Duration::from_secs(5));
    assert!(child.child().try_wait().unwrap().is_none(), "still running");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("waiting for the audio device"), "{text}");
    // The device appears.
    let bytes: Vec<u8> = audio.iter().flat_map(|s| s.to_le_bytes()).collect();
    let tmp = dir.path().join("mic.tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, &raw).unwrap();
    let appeared = Instant::now();
    let out = child.output();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(out.status.success(), "{text}");
    assert!(appeared.elapsed() < Duration::from_secs(20), "{text}");
    assert!(text.contains(&format!("{SECONDS}.0 s of audio")), "{text}");
    assert!(detection_ids(&out.stdout).len() >= 3, "{text}");
}

#[test]
fn outside_its_listening_windows_a_station_analyses_nothing() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let station = station(dir.path(), "asleep");
    // A window that starts two hours from now (local time) and lasts one hour.
    let now = chrono::Local::now();
    let hhmm = |t: chrono::DateTime<chrono::Local>| t.format("%H:%M").to_string();
    let window = format!(
        "[schedule]\nmode = \"windows\"\n\n[[schedule.window]]\nstart = \"{}\"\nend = \"{}\"\n\n[model]",
        hhmm(now + chrono::Duration::hours(2)),
        hhmm(now + chrono::Duration::hours(3))
    );
    let text = std::fs::read_to_string(&station)
        .unwrap()
        .replace("[model]", &window);
    std::fs::write(&station, text).unwrap();
    let alsa = file_microphone(dir.path(), &vec![0.1; 32_000 * 3]);
    // `--record` checks a microphone whenever the technician is there: it records what
    // is captured, listening or not. (Before: an empty file outside the windows.)
    let recording = dir.path().join("check.wav");
    let out = run_station(
        &alsa,
        &station,
        &["--duration", "2", "--record", recording.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("listening (station schedule)"), "{stderr}");
    assert!(
        stderr.contains("0.0 s of audio, 0 windows, 0 detections"),
        "{stderr}"
    );
    let recorded = read_recording(&recording);
    assert!(
        recorded.len() >= 32_000,
        "{} samples recorded",
        recorded.len()
    );
    assert!(recorded.iter().all(|&x| (x - 0.1).abs() < 1e-6));
}

/// `station.latitude` and `.longitude` place the sun: the same sunrise-to-sunset window
/// listens where it is day now and sleeps where it is night.
#[test]
fn sun_windows_follow_the_station_location() {
    use chrono::Timelike;
    let _serial = serial();
    let now = chrono::Utc::now();
    let utc_hours = f64::from(now.hour()) + f64::from(now.minute()) / 60.0;
    // The longitude where the local solar time is `solar` hours now (on the equator the
    // sun rises near 06:00 and sets near 18:00 solar time all year).
    let longitude_at = |solar: f64| ((solar - utc_hours) * 15.0 + 540.0).rem_euclid(360.0) - 180.0;
    let run = |id: &str, longitude: f64| {
        let dir = tempfile::tempdir().unwrap();
        let station = station(dir.path(), id);
        let text = std::fs::read_to_string(&station)
            .unwrap()
            .replacen(
                "[station]\n",
                &format!(
                    "[station]\nlatitude = 0.0\nlongitude = {longitude:.3}\ntimezone = \"UTC\"\n"
                ),
                1,
            )
            .replace(
                "[model]",
                "[schedule]\nmode = \"windows\"\n\n[[schedule.window]]\nstart = \"sunrise\"\nend = \"sunset\"\n\n[model]",
            );
        std::fs::write(&station, text).unwrap();
        let alsa = file_microphone(dir.path(), &vec![0.1; 32_000 * 3]);
        let out = run_station(&alsa, &station, &["--duration", "2"]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        stderr
    };
    let day = run("noon", longitude_at(12.0));
    assert!(day.contains("listening (station schedule)"), "{day}");
    assert!(
        !day.lines().any(|l| l.starts_with("0.0 s of audio")),
        "{day}"
    );
    let night = run("midnight", longitude_at(0.0));
    assert!(!night.contains("listening (station schedule)"), "{night}");
    assert!(night.contains("0.0 s of audio, 0 windows"), "{night}");
}

/// `mqtt.heartbeat_s` is the heartbeat's period: a station set to 5 s (the default is
/// 60) beats when it connects and every 5 s after.
#[test]
fn heartbeats_come_every_heartbeat_s() {
    let _serial = serial();
    let broker = warble_tests::broker::Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let station = station(dir.path(), "beat-5");
    deliver_to(&station, broker.port(), "heartbeat_s = 5\n");
    let beats = common::subscribe(broker.port(), "watcher", "warble/beat-5/heartbeat");
    let (alsa, _writer) = common::paced_microphone(dir.path(), vec![0.0; 32_000], 15.0);
    let out = run_station(&alsa, &station, &["--duration", "12"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let uptimes: Vec<u64> = beats
        .try_iter()
        .map(|(_, p)| {
            serde_json::from_slice::<warble_core::wire::Heartbeat>(&p)
                .unwrap()
                .uptime_s
        })
        .collect();
    assert!((2..=4).contains(&uptimes.len()), "{uptimes:?}\n{stderr}");
    for pair in uptimes.windows(2) {
        assert!((4..=6).contains(&(pair[1] - pair[0])), "{uptimes:?}");
    }
}

/// A stop request is obeyed while the audio device is still opening (here a FIFO that
/// nobody writes, so the driver's open blocks): the agent stops cleanly at once instead
/// of hanging until systemd kills it.
#[test]
fn a_stop_request_is_obeyed_while_the_audio_device_is_opening() {
    use std::time::{Duration, Instant};
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("mic.fifo");
    common::mkfifo(&fifo);
    let alsa = common::alsa_file_device(dir.path(), &fifo);
    let station = station(dir.path(), "stuck");
    let log = dir.path().join("agent.log");
    let mut child = spawn_station(&station, &[("ALSA_CONFIG_PATH", &alsa)], 32_000, &log);
    std::thread::sleep(Duration::from_secs(3));
    assert!(child.child().try_wait().unwrap().is_none(), "still opening");
    let pid = child.child().id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let asked = Instant::now();
    let status = loop {
        if let Some(status) = child.child().try_wait().unwrap() {
            break status;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(10),
            "still running 10 s after SIGTERM: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{text}");
    assert!(text.contains("stopped as asked"), "{text}");
    assert!(!text.contains("capturing from"), "{text}");
}

#[test]
fn a_running_station_reports_its_status_heartbeats_and_detections() {
    let _serial = serial();
    let broker = warble_tests::broker::Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let station = station(dir.path(), "marsh-5");
    // station.name is the device Home Assistant shows.
    let text = std::fs::read_to_string(&station).unwrap().replace(
        "id = \"marsh-5\"\n",
        "id = \"marsh-5\"\nname = \"Marsh five, east bank\"\n",
    );
    std::fs::write(&station, text).unwrap();
    deliver_to(
        &station,
        broker.port(),
        "heartbeat_s = 5\nha_discovery = true\n",
    );
    let messages = common::subscribe(broker.port(), "watcher", "warble/marsh-5/#");
    let discovery = common::subscribe(broker.port(), "home-assistant", "homeassistant/#");
    // 10 s of the demo recording as the microphone.
    let alsa = file_microphone(dir.path(), &common::demo_excerpt(10));
    // Long enough to connect and beat; --max-samples ends capture, the run then flushes.
    let out = run_station(&alsa, &station, &["--duration", "3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = common::detection_spans(&String::from_utf8_lossy(&out.stdout));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("of one core), peak RSS") && stderr.contains("window latency p50"),
        "the run ends with what it cost: {stderr}"
    );
    let mut got: Vec<(String, serde_json::Value)> = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if let Ok((topic, payload)) = messages.recv_timeout(std::time::Duration::from_millis(100)) {
            got.push((topic, serde_json::from_slice(&payload).unwrap()));
        }
    }
    let on = |t: &str| {
        got.iter()
            .filter(|(topic, _)| topic == t)
            .map(|(_, v)| v.clone())
            .collect::<Vec<_>>()
    };
    let status = on("warble/marsh-5/status");
    assert_eq!(
        status.first().map(|v| v["state"].clone()),
        Some("online".into()),
        "{got:?}"
    );
    assert_eq!(
        status.last().map(|v| v["state"].clone()),
        Some("offline".into()),
        "a clean stop says so"
    );
    let beats = on("warble/marsh-5/heartbeat");
    let beat = beats.first().expect("a heartbeat");
    for key in [
        "uptime_s",
        "audio_s",
        "overruns",
        "detections",
        "outbox_depth",
        "disk_free_bytes",
        "windows",
        "model",
        "boot",
    ] {
        assert!(!beat[key].is_null(), "{key} in {beat}");
    }
    assert_eq!(beat["model"]["id"], "warble-demo");
    // Every heartbeat reads as the typed message, with the states of a healthy station.
    for b in &beats {
        serde_json::from_value::<warble_core::wire::Heartbeat>(b.clone()).unwrap();
    }
    for (key, healthy) in [
        ("engine", "onnxruntime"),
        ("delivery", "accepted"),
        ("outbox_reserve", "kept"),
        ("clock", "set"),
        ("audio_device", "open"),
    ] {
        assert_eq!(beat[key], healthy, "{key} in {beat}");
    }
    // Home Assistant finds the station: a connectivity sensor on its status topic.
    let (_, online) = discovery
        .recv_timeout(std::time::Duration::from_secs(1))
        .map(|(t, p)| (t, serde_json::from_slice::<serde_json::Value>(&p).unwrap()))
        .into_iter()
        .chain(std::iter::from_fn(|| {
            discovery
                .try_recv()
                .ok()
                .map(|(t, p)| (t, serde_json::from_slice(&p).unwrap()))
        }))
        .find(|(t, _)| t == "homeassistant/binary_sensor/warble_marsh_5/online/config")
        .expect("a discovery config for the station's connectivity");
    assert_eq!(online["state_topic"], "warble/marsh-5/status");
    assert_eq!(online["device"]["name"], "Marsh five, east bank");
    let delivered = on("warble/marsh-5/detections");
    // At least once: an event in flight when a delivery round ends is sent again, so
    // compare ids (subscribers de-duplicate on them), not message counts.
    let ids: std::collections::BTreeSet<String> = delivered
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect();
    let expected: std::collections::BTreeSet<String> = detection_ids(&out.stdout);
    assert_eq!(
        ids,
        expected,
        "every detection delivered, nothing else; {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!written.is_empty());
}

#[test]
fn a_killed_station_is_marked_offline_by_its_last_will() {
    let _serial = serial();
    let broker = warble_tests::broker::Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let station = station(dir.path(), "marsh-6");
    deliver_to(&station, broker.port(), "");
    let alsa = file_microphone(dir.path(), &vec![0.0; 32_000 * 3]);
    let status = common::subscribe(broker.port(), "watcher", "warble/marsh-6/status");
    let mut child = Command::new(env!("CARGO_BIN_EXE_warble-agent"))
        .env("ALSA_CONFIG_PATH", &alsa)
        .args([
            "run",
            "--config",
            station.to_str().unwrap(),
            "--duration",
            "60",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let state = |timeout: u64| {
        status
            .recv_timeout(std::time::Duration::from_secs(timeout))
            .map(|(_, p)| serde_json::from_slice::<serde_json::Value>(&p).unwrap()["state"].clone())
            .ok()
    };
    assert_eq!(state(15), Some("online".into()), "birth");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        state(10),
        Some("offline".into()),
        "the broker publishes the will"
    );
}

/// Runs a station with clips on the first 10 s of the demo recording (unpaced file
/// microphone); returns its detections and stderr.
fn run_with_clips(dir: &Path, id: &str, privacy: &[&str]) -> (Vec<Detection>, String) {
    let station = station(dir, id);
    let text = std::fs::read_to_string(&station).unwrap().replace(
        "[storage]",
        &format!(
            "privacy_classes = {privacy:?}\n\n[output.clips]\npre_roll_s = 1.0\npost_roll_s = 1.0\nquota_mb = 50\n\n[storage]"
        ),
    );
    std::fs::write(&station, text).unwrap();
    let pcm = common::demo_excerpt(10);
    let mic_dir = dir.join(format!("mic-{id}"));
    std::fs::create_dir_all(&mic_dir).unwrap();
    let alsa = file_microphone(&mic_dir, &pcm);
    let out = run_station(&alsa, &station, &["--max-samples", &pcm.len().to_string()]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (common::parse_detections(&out.stdout), stderr)
}

#[test]
fn detections_get_clips_with_their_rolls_and_privacy_classes_withhold_them() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (events, stderr) = run_with_clips(dir.path(), "clips", &[]);
    assert!(!events.is_empty(), "{stderr}");
    let clip_dir = dir.path().join("data-clips").join("clips");
    for e in &events {
        let name = e
            .clip
            .as_deref()
            .unwrap_or_else(|| panic!("a clip for {e:?}"));
        let wav = hound::WavReader::open(clip_dir.join(name)).unwrap();
        assert_eq!(wav.spec().sample_rate, 32_000);
        // The event with 1 s before and 1 s after, cut by the recording's ends.
        let want = (e.end_sample + 32_000).min(10 * 32_000) - e.start_sample.saturating_sub(32_000);
        assert_eq!(u64::from(wav.duration()), want, "{name}");
    }
    assert!(
        stderr.contains(&format!("clips: {} written, 0 withheld", events.len())),
        "{stderr}"
    );

    // The first species detected is now a privacy class (say, a human voice): no clip
    // that overlaps any of its windows is kept, reported as a species or not.
    let private = events[0].code.to_string();
    let (again, stderr) = run_with_clips(dir.path(), "private", &[&private]);
    assert_eq!(
        again.len(),
        events.len(),
        "privacy withholds clips, not detections"
    );
    let clip_dir = dir.path().join("data-private").join("clips");
    let withheld = again
        .iter()
        .filter(|e| !clip_dir.join(e.clip.as_deref().unwrap()).exists())
        .count();
    assert!(
        again
            .iter()
            .filter(|e| e.code.as_str() == private)
            .all(|e| !clip_dir.join(e.clip.as_deref().unwrap()).exists()),
        "{stderr}"
    );
    assert!(withheld >= 1);
    assert!(
        stderr.contains(&format!("{withheld} withheld for privacy")),
        "{stderr}"
    );
}

#[test]
fn under_systemd_the_station_says_ready_pings_the_watchdog_and_says_stopping() {
    use std::os::unix::net::UnixDatagram;
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    let station = station(dir.path(), "unit");
    let (alsa, _writer) = common::paced_microphone(dir.path(), Vec::new(), 10.0);
    // Read as they come, as systemd does: a datagram socket holds only a few unread
    // messages, and then the sender blocks.
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let listener = std::thread::spawn(move || {
        let mut messages = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match socket.recv(&mut buf) {
                Ok(n) => messages.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(_) if done_rx.try_recv().is_ok() => return messages,
                Err(_) => {}
            }
        }
    });
    let out = Command::new(env!("CARGO_BIN_EXE_warble-agent"))
        .env("ALSA_CONFIG_PATH", &alsa)
        .env("NOTIFY_SOCKET", &socket_path)
        // WatchdogSec=0.4 s: a ping every 0.2 s.
        .env("WATCHDOG_USEC", "400000")
        .args([
            "run",
            "--config",
            station.to_str().unwrap(),
            "--duration",
            "2",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    done_tx.send(()).unwrap();
    let messages = listener.join().unwrap();
    assert!(
        messages.first().is_some_and(|m| m.contains("READY=1")),
        "{messages:?}"
    );
    let pings = messages.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    assert!(
        (5..=15).contains(&pings),
        "{pings} pings in 2 s: {messages:?}"
    );
    assert!(
        messages.last().is_some_and(|m| m.contains("STOPPING=1")),
        "{messages:?}"
    );
}

/// Event times come from the wall clock chunk by chunk: a microphone that stalls for 10 s
/// (a hung sound card, a USB hub resetting) dates the events after the stall 10 s later
/// than counting samples from the start would (which dated them 10 s early).
#[test]
fn events_after_a_stalled_microphone_carry_the_later_wall_clock_time() {
    use chrono::{Duration as Span, Utc};
    const STALL_AT_S: usize = 12;
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let audio = common::demo_excerpt(SECONDS);
    let stall_at = STALL_AT_S * 32_000;
    let (alsa, _writer) = common::stalling_microphone(
        dir.path(),
        audio.clone(),
        SECONDS as f64 + 20.0,
        Some((stall_at, std::time::Duration::from_secs(10))),
    );
    let station = station(dir.path(), "stall");
    let before = Utc::now();
    let out = run_station(
        &alsa,
        &station,
        &["--max-samples", &audio.len().to_string()],
    );
    let after = Utc::now();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let events: Vec<Detection> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Where each event puts the stream's first sample: its start minus its offset.
    let origin =
        |e: &Detection| e.start - Span::microseconds((e.start_sample as f64 / 0.032) as i64);
    let early: Vec<_> = events
        .iter()
        .filter(|e| e.end_sample <= stall_at as u64)
        .collect();
    let late: Vec<_> = events
        .iter()
        .filter(|e| e.start_sample >= stall_at as u64)
        .collect();
    assert!(
        !early.is_empty() && !late.is_empty(),
        "{events:#?}\n{stderr}"
    );
    let first = origin(early[0]);
    for e in &early {
        let off = (origin(e) - first).abs();
        assert!(off < Span::milliseconds(200), "{} off by {off}", e.id);
    }
    for e in &late {
        let shift = origin(e) - first;
        assert!(
            (shift - Span::seconds(10)).abs() < Span::milliseconds(500),
            "{} is dated {shift} after the stream's start, not 10 s:\n{stderr}",
            e.id
        );
    }
    for e in &events {
        assert!(
            before <= e.start && e.end <= after,
            "{} at {}",
            e.id,
            e.start
        );
    }
}

/// The shared library of libfaketime (Debian's `faketime`, installed by
/// scripts/install-deps).
fn libfaketime() -> std::path::PathBuf {
    let found = std::fs::read_dir("/usr/lib")
        .unwrap()
        .filter_map(Result::ok)
        .map(|d| d.path().join("faketime/libfaketime.so.1"))
        .find(|p| p.is_file());
    found.expect("libfaketime is missing: run scripts/install-deps (Debian package faketime)")
}

/// A recorder without a battery-backed clock boots in 1970 or at its last shutdown: the
/// agent stamps nothing before the clock passes its build time, says so, then stamps
/// the real time once the clock is set (libfaketime plays the unset clock).
#[test]
fn a_clock_that_is_not_set_is_waited_for_before_anything_is_stamped() {
    use std::time::Duration;
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let audio = common::demo_excerpt(10);
    let (alsa, _writer) = common::paced_microphone(dir.path(), audio.clone(), 20.0);
    let station = station(dir.path(), "noclock");
    let fake = dir.path().join("faketime");
    std::fs::write(&fake, "@2020-01-01 00:00:00\n").unwrap();
    let log = dir.path().join("agent.log");
    let faketime = libfaketime();
    let env: [(&str, &Path); 5] = [
        ("ALSA_CONFIG_PATH", &alsa),
        ("LD_PRELOAD", &faketime),
        ("FAKETIME_TIMESTAMP_FILE", &fake),
        ("FAKETIME_NO_CACHE", Path::new("1")),
        ("FAKETIME_DONT_FAKE_MONOTONIC", Path::new("1")),
    ];
    let mut child = spawn_station(&station, &env, audio.len(), &log);
    std::thread::sleep(Duration::from_secs(4));
    assert!(child.child().try_wait().unwrap().is_none(), "still running");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("waiting for the clock to be set: it reads 2020-01-01"),
        "{text}"
    );
    assert!(!text.contains("capturing from"), "{text}");
    // Time synchronisation sets the clock.
    std::fs::write(&fake, "+0\n").unwrap();
    let set_at = chrono::Utc::now();
    let out = child.output();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(out.status.success(), "{text}");
    let events: Vec<Detection> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!events.is_empty(), "{text}");
    for e in &events {
        assert!(
            e.start >= set_at - chrono::Duration::seconds(2),
            "{} stamped {}",
            e.id,
            e.start
        );
    }
}
