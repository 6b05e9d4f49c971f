//! Helpers shared by the agent's integration tests.
#![allow(dead_code, reason = "each test binary uses some of the helpers")]

use std::path::PathBuf;
use std::process::Command;

/// A file of the repository, from its root.
pub fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

#[allow(unused_imports, reason = "not every test binary uses it")]
pub use warble_tests::events::sample_event;

/// An analyzer of the demo bundle on tract (one thread), with `analyze` settings.
pub fn demo_analyzer(
    analyze: warble_agent::analyze::AnalyzeConfig,
) -> warble_agent::analyze::Analyzer {
    let cfg = warble_infer::EngineConfig {
        choice: warble_infer::EngineChoice::Tract,
        ort_library: None,
        threads: 1,
    };
    warble_agent::model::LoadedModel::load(warble_tests::demo::bundle(), "the demo", &cfg)
        .expect("the demo model loads")
        .into_analyzer(analyze)
        .expect("an analyzer")
}

/// Delivery settings for station `wetland-03` (prefix `warble`, client id
/// `warble-wetland-03`) at a broker on 127.0.0.1:`port`.
pub fn broker_config(port: u16) -> warble_agent::publish::BrokerConfig {
    use warble_core::wire::{StationId, TopicPrefix, Topics};
    warble_agent::publish::BrokerConfig {
        endpoint: warble_mqtt::Endpoint::new("127.0.0.1", port),
        client_id: "warble-wetland-03".into(),
        topics: Topics::new(
            TopicPrefix::new("warble").expect("a prefix"),
            StationId::new("wetland-03").expect("a station id"),
        ),
        window: 32,
        ha_device: None,
    }
}

/// The detections a station or `analyze` printed as JSON Lines.
pub fn parse_detections(stdout: &[u8]) -> Vec<warble_core::event::Detection> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a detection per line"))
        .collect()
}

/// Runs `warble-agent` with `args`: exit code, stdout, stderr.
pub fn agent(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_warble-agent"))
        .args(args)
        .output()
        .expect("warble-agent runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A subscriber on `filter` at a broker on 127.0.0.1:`port`, ready (SUBACK received)
/// when returned; yields (topic, payload) for 60 s.
pub fn subscribe(
    port: u16,
    id: &str,
    filter: &str,
) -> std::sync::mpsc::Receiver<(String, Vec<u8>)> {
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    use std::time::{Duration, Instant};
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut connection) = Client::new(opts, 64);
    client
        .subscribe(filter, QoS::AtLeastOnce)
        .expect("subscribe request");
    let (tx, rx) = std::sync::mpsc::channel();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _client = client;
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            match connection.recv_timeout(Duration::from_millis(200)) {
                Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => {
                    let _ = ready_tx.send(());
                }
                Ok(Ok(Event::Incoming(Packet::Publish(p))))
                    if tx.send((p.topic.clone(), p.payload.to_vec())).is_err() =>
                {
                    return;
                }
                Ok(Err(_)) => std::thread::sleep(Duration::from_millis(100)),
                _ => {}
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("subscribed");
    rx
}

/// A station file for station `id` in `dir`: the demo bundle, 32 kHz capture, data in
/// `dir/data-<id>`.
pub fn station(dir: &std::path::Path, id: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{id}.toml"));
    std::fs::write(
        &path,
        format!(
            "[station]\nid = \"{id}\"\n\n[audio]\nsample_rate_hz = 32000\nbuffer_s = 40.0\n\n\
             [model]\nbundle = \"{}\"\ntrusted_keys = [\"{}\"]\n\n[storage]\ndata_dir = \"{}\"\n",
            repo_file("models/demo/warble-demo-0.1.0.warble").display(),
            repo_file("models/demo/warble-demo.pub").display(),
            dir.join(format!("data-{id}")).display()
        ),
    )
    .unwrap();
    path
}

/// A "microphone": ALSA's file plugin as the default capture device, serving `samples`
/// in the format the agent asks for (32-bit float, 32 kHz, mono) — no ALSA conversion in
/// between (its `plug` resampled). Returns the configuration for `ALSA_CONFIG_PATH`.
pub fn file_microphone(dir: &std::path::Path, samples: &[f32]) -> std::path::PathBuf {
    let raw = dir.join("mic.f32");
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    std::fs::write(&raw, bytes).unwrap();
    alsa_file_device(dir, &raw)
}

/// An ALSA configuration whose default capture device reads raw samples from `infile`.
pub fn alsa_file_device(dir: &std::path::Path, infile: &std::path::Path) -> std::path::PathBuf {
    let alsa = dir.join("asound.conf");
    std::fs::write(
        &alsa,
        format!(
            "pcm.!default {{\n type file\n slave.pcm {{ type null }}\n file \"/dev/null\"\n \
             infile \"{}\"\n format \"raw\"\n}}\n",
            infile.display()
        ),
    )
    .unwrap();
    alsa
}

/// Adds an `[mqtt]` section for the broker on 127.0.0.1:`port` (plus `extra` lines) to a
/// station file.
pub fn deliver_to(station: &std::path::Path, port: u16, extra: &str) {
    let text = std::fs::read_to_string(station).unwrap().replace(
        "[storage]",
        &format!("[mqtt]\nbroker = \"mqtt://127.0.0.1:{port}\"\n{extra}\n[storage]"),
    );
    std::fs::write(station, text).unwrap();
}

/// A paced "microphone": ALSA's file plugin as the default capture device reading a FIFO
/// that a thread fills at real-time pace (32 kHz, 32-bit float, mono) with `samples`, then
/// silence, `seconds` in all — so `warble-agent run` captures as from a sound card,
/// without burning a core. Returns the configuration for `ALSA_CONFIG_PATH` and the writer
/// thread.
pub fn paced_microphone(
    dir: &std::path::Path,
    samples: Vec<f32>,
    seconds: f64,
) -> (std::path::PathBuf, std::thread::JoinHandle<()>) {
    stalling_microphone(dir, samples, seconds, None)
}

/// A [`paced_microphone`] that stalls once: after sample `stall.0` it delivers nothing for
/// `stall.1` (a sound card that hangs, a USB hub resetting), then goes on at its pace.
pub fn stalling_microphone(
    dir: &std::path::Path,
    samples: Vec<f32>,
    seconds: f64,
    stall: Option<(usize, std::time::Duration)>,
) -> (std::path::PathBuf, std::thread::JoinHandle<()>) {
    use std::io::Write;
    use std::time::{Duration, Instant};
    let fifo = dir.join("mic.fifo");
    mkfifo(&fifo);
    let alsa = alsa_file_device(dir, &fifo);
    let writer = std::thread::spawn(move || {
        // Opening blocks until the agent's ALSA plugin opens the other end.
        let open = || std::fs::OpenOptions::new().write(true).open(&fifo);
        let Ok(mut out) = open() else {
            return;
        };
        // One 25-ms capture period per write: ALSA's file plugin counts a short read
        // from the FIFO as a whole period.
        const PERIOD: usize = 800;
        let total = (seconds * 32_000.0) as usize;
        let mut started = Instant::now();
        let mut chunk = Vec::with_capacity(PERIOD * 4);
        let mut at = 0;
        while at < total {
            if let Some((after, pause)) = stall
                && at == after.next_multiple_of(PERIOD)
            {
                std::thread::sleep(pause);
                started += pause;
            }
            chunk.clear();
            for i in at..at + PERIOD {
                chunk.extend_from_slice(&samples.get(i).copied().unwrap_or(0.0).to_le_bytes());
            }
            // The agent closed its end. It may open the device again at once (probing it,
            // then capturing): this chunk goes to the next open (a chunk is smaller than
            // PIPE_BUF, so it was written whole or not at all). Once the agent has stopped
            // for good, this thread waits here until the test process ends.
            while out.write_all(&chunk).is_err() {
                match open() {
                    Ok(reopened) => out = reopened,
                    Err(_) => return,
                }
            }
            at += PERIOD;
            let due = Duration::from_secs_f64(at as f64 / 32_000.0);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    });
    (alsa, writer)
}

/// The first `seconds` of the demo recording, mono at 32 kHz.
pub fn demo_excerpt(seconds: usize) -> Vec<f32> {
    use warble_core::SampleRate;
    use warble_core::audio::AudioStream;
    let mut audio = AudioStream::open(repo_file("demo/soundscape.flac"), SampleRate::HZ_32000)
        .expect("the demo recording decodes");
    let mut pcm = Vec::new();
    while audio
        .read_chunk(&mut pcm)
        .expect("the demo recording decodes")
        > 0
        && pcm.len() < seconds * 32_000
    {}
    pcm.truncate(seconds * 32_000);
    pcm
}

/// `samples` rounded to 16 bits, written as a 16-bit mono 32-kHz WAV at `path`; returns
/// the integers (for raw PCM of exactly the same audio).
pub fn write_wav_i16(path: &std::path::Path, samples: &[f32]) -> Vec<i16> {
    let ints: Vec<i16> = samples
        .iter()
        .map(|&s| (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 32_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("creating the WAV");
    for &s in &ints {
        w.write_sample(s).expect("writing the WAV");
    }
    w.finalize().expect("writing the WAV");
    ints
}

/// The detections in `warble-agent`'s JSON Lines output without their ids and times:
/// class, sample span, confidence (what two runs on the same audio must agree on).
pub fn detection_spans(stdout: &str) -> Vec<(String, u64, u64, f32)> {
    stdout
        .lines()
        .map(|l| {
            let e: warble_core::event::Detection =
                serde_json::from_str(l).expect("a detection event per line");
            (
                e.code.to_string(),
                e.start_sample,
                e.end_sample,
                e.confidence,
            )
        })
        .collect()
}

/// A child process killed however the test ends (a failed assertion must not leave a
/// station running at full CPU behind it).
pub struct Running(Option<std::process::Child>);

impl Running {
    /// Watches `child`.
    pub fn new(child: std::process::Child) -> Self {
        Self(Some(child))
    }

    /// The process.
    pub fn child(&mut self) -> &mut std::process::Child {
        self.0
            .as_mut()
            .expect("the process is watched until output() or drop")
    }

    /// Waits for it to end on its own; its output.
    pub fn output(mut self) -> std::process::Output {
        self.0
            .take()
            .expect("the process is watched until output() or drop")
            .wait_with_output()
            .expect("waiting for the process")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Makes a FIFO at `path` (coreutils' mkfifo).
pub fn mkfifo(path: &std::path::Path) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo (coreutils) runs");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// Waits (at most 10 s) until the broker's log holds `needle` `count` times.
pub fn wait_for(broker: &warble_tests::broker::Mosquitto, needle: &str, count: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while broker.log().matches(needle).count() < count {
        assert!(
            std::time::Instant::now() < deadline,
            "no `{needle}` in the broker log:\n{}",
            broker.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Publishes `payloads` to `topic` with QoS 1 as client `id`, returning when the broker has
/// acknowledged them all.
pub fn publish_all(port: u16, id: &str, topic: &str, payloads: Vec<Vec<u8>>) {
    let mut opts = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
    opts.set_keep_alive(std::time::Duration::from_secs(5))
        .set_max_packet_size(4 << 20, 4 << 20);
    let (client, mut connection) = rumqttc::Client::new(opts, payloads.len() + 1);
    let want = payloads.len();
    for p in payloads {
        client
            .publish(topic, rumqttc::QoS::AtLeastOnce, false, p)
            .unwrap();
    }
    let (mut acked, deadline) = (
        0,
        std::time::Instant::now() + std::time::Duration::from_secs(10),
    );
    while acked < want {
        assert!(
            std::time::Instant::now() < deadline,
            "{acked} of {want} acknowledged"
        );
        if let Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)))) =
            connection.recv_timeout(std::time::Duration::from_millis(200))
        {
            acked += 1;
        }
    }
}

/// The ids a collector's store (an SQLite file or a `postgres://` URL) holds for
/// `station`.
pub fn stored_ids(db: &std::path::Path, station: &str) -> std::collections::BTreeSet<String> {
    warble_collect::store::Store::open(db)
        .unwrap()
        .ids(station)
        .unwrap()
        .into_iter()
        .collect()
}

/// SIGTERM, then SIGKILL after 15 s.
pub fn terminate(child: &mut std::process::Child) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Prints the figures of a fault run as one `reliability:` line (collected into
/// docs/BENCHMARKS.md by scripts/reliability): of the `produced` event ids of `station`,
/// how many the collector's store at `db` holds (delivered) and lacks (lost), with the
/// duplicates and invalid messages it counted.
pub fn report_reliability(
    run: &str,
    db: &std::path::Path,
    station: &str,
    produced: &std::collections::BTreeSet<String>,
) {
    let report = warble_collect::store::Store::open(db)
        .expect("the collector's store opens")
        .report()
        .expect("the collector's report");
    let r = report.iter().find(|r| r.station == station);
    let held = stored_ids(db, station);
    let delivered = produced.intersection(&held).count();
    eprintln!(
        "reliability: {run}: produced {}, delivered {delivered}, duplicates {}, invalid {}, lost {}",
        produced.len(),
        r.map_or(0, |r| r.duplicates),
        report.first().map_or(0, |r| r.invalid),
        produced.len() - delivered,
    );
}

/// The number before `word` in `text` (`"… 18 detections, …"`, `"… 3 connection(s)"`).
pub fn count_before(text: &str, word: &str) -> u64 {
    text.split(word)
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a count before `{word}` in: {text}"))
}

/// `warble-collect run` on the broker at 127.0.0.1:`port` into `db` for `seconds` (plus
/// `extra` arguments), its log in `log`; killed when dropped.
pub fn collector(
    port: u16,
    db: &std::path::Path,
    seconds: u32,
    extra: &[&str],
    log: &std::path::Path,
) -> Running {
    Running::new(
        std::process::Command::new(collector_bin())
            .args(["run", "--broker", &format!("mqtt://127.0.0.1:{port}")])
            .args([
                "--db",
                db.to_str().unwrap(),
                "--duration",
                &seconds.to_string(),
            ])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    )
}

/// The collector's binary (another package's: see [`warble_tests::bins`]).
pub fn collector_bin() -> std::path::PathBuf {
    warble_tests::bins::workspace_bin(
        "warble-collect",
        &[
            "collector/src",
            "mqtt/src",
            "core/src",
            "firmware-config/src",
        ],
    )
}

/// `warble-agent run --config config` on a [`paced_microphone`] playing `audio` (then
/// silence) for `seconds`, in `dir` (its FIFO, its detections file `detections.jsonl`,
/// its log `agent.log`).
pub fn paced_station(
    dir: &std::path::Path,
    config: &std::path::Path,
    audio: Vec<f32>,
    seconds: u32,
) -> Running {
    std::fs::create_dir_all(dir).unwrap();
    let (alsa, _writer) = paced_microphone(dir, audio, f64::from(seconds) + 30.0);
    Running::new(
        Command::new(env!("CARGO_BIN_EXE_warble-agent"))
            .env("ALSA_CONFIG_PATH", alsa)
            .args(["run", "--config", config.to_str().unwrap()])
            .args(["--duration", &seconds.to_string()])
            .args(["--out", dir.join("detections.jsonl").to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("agent.log")).unwrap())
            .spawn()
            .unwrap(),
    )
}
