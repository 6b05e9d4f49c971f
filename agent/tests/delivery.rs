//! Detections travel from analysis through the durable outbox to a real mosquitto and a
//! subscriber: all of them, once each, including across a broker outage.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;
use common::{agent, publish_all, repo_file, stored_ids, terminate, wait_for};

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use warble_core::event::Detection;
use warble_tests::broker::Mosquitto;

/// A subscriber on `warble/+/detections`, ready (SUBACK received) when returned.
fn subscribe(port: u16, id: &str) -> mpsc::Receiver<Detection> {
    let raw = common::subscribe(port, id, "warble/+/detections");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        while let Ok((_, payload)) = raw.recv() {
            if tx.send(serde_json::from_slice(&payload).unwrap()).is_err() {
                return;
            }
        }
    });
    rx
}

/// Events until `want` distinct ids arrived (or 20 s passed).
fn collect(rx: &mpsc::Receiver<Detection>, want: usize) -> Vec<Detection> {
    let mut got = Vec::new();
    let mut ids = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while ids.len() < want && Instant::now() < deadline {
        if let Ok(e) = rx.recv_timeout(Duration::from_millis(200)) {
            ids.insert(e.id.clone());
            got.push(e);
        }
    }
    got
}

fn station_file(dir: &Path, port: u16) -> PathBuf {
    let path = dir.join("station.toml");
    std::fs::copy(
        repo_file("models/demo/warble-demo.pub"),
        dir.join("demo.pub"),
    )
    .unwrap();
    std::fs::write(
        &path,
        format!(
            "[station]\nid = \"marsh-3\"\n\n[model]\nbundle = \"{}\"\ntrusted_keys = [\"demo.pub\"]\n\n\
             [mqtt]\nbroker = \"mqtt://127.0.0.1:{port}\"\n\n[storage]\ndata_dir = \"{}\"\n",
            repo_file("models/demo/warble-demo-0.1.0.warble").display(),
            dir.join("data").display()
        ),
    )
    .unwrap();
    path
}

fn analyze(station: &Path) -> Vec<Detection> {
    let demo = repo_file("demo/soundscape.flac");
    let (code, out, err) = agent(&[
        "analyze",
        "--config",
        station.to_str().unwrap(),
        demo.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn ids(events: &[Detection]) -> BTreeSet<String> {
    events.iter().map(|e| e.id.clone()).collect()
}

#[test]
fn every_detection_reaches_the_subscriber_even_across_a_broker_outage() {
    let mut broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let station = station_file(dir.path(), broker.port());
    let config = station.to_str().unwrap();

    let rx = subscribe(broker.port(), "collector-1");
    let first = analyze(&station);
    assert!(first.len() >= 5, "{}", first.len());
    let (code, out, err) = agent(&["deliver", "--config", config, "--timeout", "20"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("delivered {} event(s), 0 pending", first.len())),
        "{out}"
    );
    let got = collect(&rx, first.len());
    assert_eq!(ids(&got), ids(&first), "every event, nothing else");
    for e in &got {
        let sent = first.iter().find(|f| f.id == e.id).unwrap();
        assert_eq!(
            (e.code.as_str(), e.start, e.seq),
            (sent.code.as_str(), sent.start, sent.seq)
        );
        // Queued by one process and sent by another: late, and said so.
        assert!(e.historical, "{}", e.id);
    }

    // Outage: the broker is down while a second boot's detections are made.
    broker.stop().unwrap();
    let second = analyze(&station);
    assert!(second.iter().all(|e| e.boot > first[0].boot));
    let started = Instant::now();
    let (code, out, err) = agent(&["deliver", "--config", config, "--timeout", "3"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(&format!("delivered 0 event(s), {} pending", second.len())),
        "{out}"
    );
    assert!(out.contains("last problem"), "{out}");
    // Bounded by its timeout, backing off instead of spinning.
    assert!(started.elapsed() < Duration::from_secs(10));

    // The broker returns: nothing was lost.
    broker.restart().unwrap();
    let rx = subscribe(broker.port(), "collector-2");
    let (code, out, err) = agent(&["deliver", "--config", config, "--timeout", "20"]);
    assert_eq!(code, 0, "{out}{err}");
    let got = collect(&rx, second.len());
    assert_eq!(ids(&got), ids(&second));
    // And a run with nothing to send succeeds at once.
    let (code, out, _) = agent(&["deliver", "--config", config, "--timeout", "5"]);
    assert_eq!(code, 0);
    assert!(out.contains("delivered 0 event(s), 0 pending"), "{out}");
}

#[test]
fn delivery_needs_an_mqtt_section_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let station = station_file(dir.path(), 1883);
    let text = std::fs::read_to_string(&station).unwrap();
    let without: String = text.replace("[mqtt]\nbroker = \"mqtt://127.0.0.1:1883\"\n", "");
    std::fs::write(&station, without).unwrap();
    let (code, _, err) = agent(&["deliver", "--config", station.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("no [mqtt] section"), "{err}");
}

fn collector(port: u16, db: &Path, seconds: u32) -> std::process::Child {
    collector_with(port, db, seconds, &[])
}

fn collector_with(port: u16, db: &Path, seconds: u32, extra: &[&str]) -> std::process::Child {
    std::process::Command::new(common::collector_bin())
        .args([
            "run",
            "--broker",
            &format!("mqtt://127.0.0.1:{port}"),
            "--db",
            db.to_str().unwrap(),
            "--duration",
            &seconds.to_string(),
        ])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn the_collector_keeps_every_event_once_even_while_it_was_down() {
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let station = station_file(dir.path(), broker.port());
    let config = station.to_str().unwrap();
    let db = dir.path().join("collected.sqlite");

    // First session: the collector subscribes (persistently) and receives boot 1.
    let mut c = collector(broker.port(), &db, 10);
    wait_for(&broker, "Received SUBSCRIBE from warble-collect", 1);
    let first = analyze(&station);
    let (code, out, err) = agent(&["deliver", "--config", config, "--timeout", "20"]);
    assert_eq!(code, 0, "{out}{err}");
    let done = c.wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let said = String::from_utf8_lossy(&done.stdout).into_owned();
    assert!(
        said.contains(&format!("stored {} new event(s)", first.len())),
        "{said}"
    );

    // While the collector is down, boot 2 is delivered and one event arrives again.
    let second = analyze(&station);
    let (code, out, err) = agent(&["deliver", "--config", config, "--timeout", "20"]);
    assert_eq!(code, 0, "{out}{err}");
    let mut opts = MqttOptions::new("replayer", "127.0.0.1", broker.port());
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut connection) = Client::new(opts, 8);
    let again = serde_json::to_vec(&first[0]).unwrap();
    client
        .publish("warble/marsh-3/detections", QoS::AtLeastOnce, false, again)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Ok(Event::Incoming(Packet::PubAck(_)))) =
            connection.recv_timeout(Duration::from_millis(200))
        {
            break;
        }
    }

    // Back up: the broker hands over what it kept for the collector's session.
    c = collector(broker.port(), &db, 6);
    let done = c.wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let said = String::from_utf8_lossy(&done.stdout).into_owned();
    assert!(
        said.contains(&format!("stored {} new event(s)", second.len())),
        "{said}"
    );

    let out = std::process::Command::new(common::collector_bin())
        .args(["report", "--db", db.to_str().unwrap()])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let total = first.len() + second.len();
    assert!(
        report.contains(&format!(
            "marsh-3: {total} event(s), boots [{}, {}], {total} late, 0 revised, 1 duplicate(s), no gaps",
            first[0].boot, second[0].boot
        )),
        "{report}"
    );
    let csv = dir.path().join("events.csv");
    let out = std::process::Command::new(common::collector_bin())
        .args([
            "export",
            "--db",
            db.to_str().unwrap(),
            "--out",
            csv.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        std::fs::read_to_string(csv).unwrap().lines().count(),
        1 + total
    );
    let produced: BTreeSet<String> = ids(&first).union(&ids(&second)).cloned().collect();
    common::report_reliability(
        "collector down, one event sent twice",
        &db,
        "marsh-3",
        &produced,
    );
}

/// A test PKI: a CA, a server certificate for localhost/127.0.0.1 and a client
/// certificate, written as PEM files into `dir`; returns (ca, server cert, server key,
/// client cert, client key).
fn pki(dir: &Path, name: &str) -> [PathBuf; 5] {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} test CA"));
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |sans: Vec<String>, cn: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        (
            params.signed_by(&key, &issuer).unwrap().pem(),
            key.serialize_pem(),
        )
    };
    let (server_cert, server_key) = leaf(vec!["localhost".into(), "127.0.0.1".into()], "broker");
    let (client_cert, client_key) = leaf(vec![], "marsh-3");
    let files = [
        (format!("{name}-ca.pem"), ca_cert.pem()),
        (format!("{name}-server.pem"), server_cert),
        (format!("{name}-server.key"), server_key),
        (format!("{name}-client.pem"), client_cert),
        (format!("{name}-client.key"), client_key),
    ];
    files.map(|(file, text)| {
        let path = dir.join(file);
        std::fs::write(&path, text).unwrap();
        path
    })
}

#[test]
fn delivery_over_mutual_tls_needs_the_right_ca_and_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let [ca, server_cert, server_key, client_cert, client_key] = pki(dir.path(), "fleet");
    let [other_ca, ..] = pki(dir.path(), "other");
    let broker = Mosquitto::start_with(&format!(
        "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\nallow_anonymous true\n",
        ca.display(),
        server_cert.display(),
        server_key.display()
    ))
    .unwrap();
    let station = station_file(dir.path(), broker.port());
    let plain = std::fs::read_to_string(&station).unwrap();
    let with_tls = |ca: &Path, identity: bool| {
        let mut text = plain.replace(
            &format!("mqtt://127.0.0.1:{}", broker.port()),
            &format!("mqtts://localhost:{}", broker.port()),
        );
        let mut mqtt = format!("ca_file = \"{}\"\n", ca.display());
        if identity {
            mqtt += &format!(
                "client_cert = \"{}\"\nclient_key = \"{}\"\n",
                client_cert.display(),
                client_key.display()
            );
        }
        text = text.replace("[storage]", &format!("{mqtt}\n[storage]"));
        std::fs::write(&station, text).unwrap();
    };
    let config = station.to_str().unwrap();
    let events = analyze(&station);

    // No client certificate: the broker refuses the handshake; nothing is lost.
    with_tls(&ca, false);
    let (code, out, err) = agent(&["deliver", "--config", config, "--timeout", "2"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(&format!("0 event(s), {} pending", events.len())),
        "{out}"
    );
    // A broker certificate from another CA is not trusted.
    with_tls(&other_ca, true);
    let (code, out, err) = agent(&["deliver", "--config", config, "--timeout", "2"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.to_lowercase().contains("certificate"), "{out}");
    // The right CA and a client certificate: everything is delivered.
    with_tls(&ca, true);
    let (code, out, err) = agent(&["deliver", "--config", config, "--timeout", "20"]);
    assert_eq!(code, 0, "{out}{err}\n{}", broker.log());
    assert!(
        out.contains(&format!("delivered {} event(s), 0 pending", events.len())),
        "{out}"
    );
}

/// Two collectors sharing one subscription (`--share fleet`), storing into `dbs`; the
/// station's analysed events are delivered to them. Returns the events and what the
/// collectors printed when their 12 s were up.
fn deliver_to_shared_collectors(
    broker: &Mosquitto,
    station: &Path,
    dbs: [&Path; 2],
) -> (Vec<Detection>, Vec<std::process::Output>) {
    let collectors: Vec<_> = dbs
        .iter()
        .zip(["collect-a", "collect-b"])
        .map(|(db, id)| {
            collector_with(
                broker.port(),
                db,
                12,
                &["--share", "fleet", "--client-id", id],
            )
        })
        .collect();
    wait_for(broker, "$share/fleet/warble/+/detections", 2);
    let events = analyze(station);
    let (code, out, err) = agent(&[
        "deliver",
        "--config",
        station.to_str().unwrap(),
        "--timeout",
        "20",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let done = collectors
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    (events, done)
}

#[test]
fn collectors_sharing_a_subscription_split_the_events_between_them() {
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let station = station_file(dir.path(), broker.port());
    let (db_a, db_b) = (dir.path().join("a.sqlite"), dir.path().join("b.sqlite"));
    let (events, done) = deliver_to_shared_collectors(&broker, &station, [&db_a, &db_b]);
    for d in done {
        assert!(d.status.success());
    }
    let stored = |db: &Path| -> BTreeSet<String> {
        let out = std::process::Command::new(common::collector_bin())
            .args([
                "export",
                "--db",
                db.to_str().unwrap(),
                "--out",
                db.with_extension("csv").to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(out.status.success());
        std::fs::read_to_string(db.with_extension("csv"))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split(',').next().unwrap().to_owned())
            .collect()
    };
    let (got_a, got_b) = (stored(&db_a), stored(&db_b));
    assert!(
        got_a.is_disjoint(&got_b),
        "each event goes to one collector"
    );
    let all: BTreeSet<String> = got_a.union(&got_b).cloned().collect();
    assert_eq!(all, ids(&events), "together they have every event");
}

#[test]
fn an_agent_killed_again_and_again_while_delivering_loses_nothing() {
    // A fleet broker must queue enough for a collector that is busy (mosquitto's default
    // of 1,000 queued messages per client drops the rest): docs/delivery.md.
    let broker =
        Mosquitto::start_with("allow_anonymous true\nmax_queued_messages 1000000\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let station = station_file(dir.path(), broker.port());
    let config = station.to_str().unwrap();
    let db = dir.path().join("collected.sqlite");
    let c = collector(broker.port(), &db, 15);
    wait_for(&broker, "Received SUBSCRIBE from warble-collect", 1);

    // 20,000 detections waiting in the station's outbox (a few seconds of delivery).
    let total = 20_000u64;
    let template_boot;
    {
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let mut outbox =
            warble_agent::outbox::Outbox::open(data.join("outbox.sqlite"), 1 << 30).unwrap();
        let template = analyze(&station).remove(0);
        template_boot = template.boot;
        let events: Vec<Detection> = (0..total)
            .map(|seq| Detection {
                id: Detection::make_id("marsh-3", 99, seq),
                boot: 99,
                seq,
                ..template.clone()
            })
            .collect();
        outbox.push(&events).unwrap();
    }
    // Ten deliveries, each SIGKILLed after 50–500 ms, mid-stream.
    let mut delays = (50..=500).step_by(50).cycle();
    for _ in 0..10 {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_warble-agent"))
            .args(["deliver", "--config", config, "--timeout", "20"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delays.next().unwrap()));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let started = Instant::now();
    let (code, out, err) = agent(&["deliver", "--config", config, "--timeout", "20"]);
    assert_eq!(code, 0, "{out}{err}");
    println!(
        "after 10 kills: {out} in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let done = c.wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let report = std::process::Command::new(common::collector_bin())
        .args(["report", "--db", db.to_str().unwrap()])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&report.stdout).into_owned();
    println!("{report}");
    // Every event of boot 99 arrived (plus the analysed ones), none missing.
    let line = report.lines().find(|l| l.starts_with("marsh-3:")).unwrap();
    let dropped: Vec<String> = broker
        .log()
        .lines()
        .filter(|l| l.contains("dropped"))
        .take(3)
        .map(str::to_owned)
        .collect();
    assert!(line.contains("no gaps"), "{line}\nbroker: {dropped:?}");
    assert!(
        line.contains(&format!("boots [99, {}]", template_boot)),
        "{line}"
    );
    let stored: u64 = line
        .split(':')
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(stored >= total, "{line}");
    let produced: BTreeSet<String> = (0..total)
        .map(|seq| Detection::make_id("marsh-3", 99, seq))
        .collect();
    common::report_reliability(
        "station SIGKILLed 10 times while delivering",
        &db,
        "marsh-3",
        &produced,
    );
}

#[test]
fn the_collector_ignores_and_counts_malformed_and_oversized_messages() {
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("collected.sqlite");
    let c = collector(broker.port(), &db, 6);
    wait_for(&broker, "Received SUBSCRIBE from warble-collect", 1);
    let event = |seq| serde_json::to_vec(&common::sample_event(seq)).unwrap();
    let mut huge = common::sample_event(99);
    huge.common = "x".repeat(300_000);
    publish_all(
        broker.port(),
        "prankster",
        "warble/wetland-03/detections",
        vec![
            event(0),
            b"{not json".to_vec(),
            serde_json::to_vec(&huge).unwrap(),
            br#"{"schema":"warble.detection/9"}"#.to_vec(),
            // Larger than the collector's MQTT 5 maximum packet size: the broker must not
            // send it at all (a 3.1.1 client failed on it and was sent it again forever).
            vec![b'x'; 2 << 20],
            event(1),
            event(2),
        ],
    );
    let done = c.wait_with_output().unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&done.stdout),
        String::from_utf8_lossy(&done.stderr),
    );
    assert!(done.status.success(), "{out}{err}");
    assert!(out.contains("stored 3 new event(s)"), "{out}{err}");
    assert!(err.contains("ignored a message"), "{err}");
    let report = std::process::Command::new(common::collector_bin())
        .args(["report", "--db", db.to_str().unwrap()])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&report.stdout).into_owned();
    assert!(
        report.contains(
            "wetland-03: 3 event(s), boots [7], 0 late, 0 revised, 0 duplicate(s), no gaps"
        ),
        "{report}"
    );
    assert!(
        report.contains("3 message(s) were not detection events"),
        "{report}"
    );
    let produced = (0..3).map(|seq| common::sample_event(seq).id).collect();
    common::report_reliability(
        "malformed, oversized and foreign-schema messages among events",
        &db,
        "wetland-03",
        &produced,
    );
}

#[test]
fn a_wrong_password_is_a_clear_error_retried_with_backoff_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let [ca, server_cert, server_key, ..] = pki(dir.path(), "fleet");
    let passwords = dir.path().join("passwd");
    let status = std::process::Command::new("mosquitto_passwd")
        .args(["-c", "-b", passwords.to_str().unwrap(), "marsh-3", "s3cret"])
        .status()
        .expect("mosquitto_passwd (Debian package mosquitto) is installed by scripts/install-deps");
    assert!(status.success());
    let broker = Mosquitto::start_with(&format!(
        "cafile {}\ncertfile {}\nkeyfile {}\nallow_anonymous false\npassword_file {}\n",
        ca.display(),
        server_cert.display(),
        server_key.display(),
        passwords.display()
    ))
    .unwrap();
    let station = station_file(dir.path(), broker.port());
    let credentials = dir.path().join("mqtt.credentials");
    let text = std::fs::read_to_string(&station).unwrap().replace(
        &format!("mqtt://127.0.0.1:{}", broker.port()),
        &format!("mqtts://localhost:{}", broker.port()),
    );
    std::fs::write(
        &station,
        text.replace(
            "[storage]",
            &format!(
                "ca_file = \"{}\"\ncredentials_file = \"{}\"\n\n[storage]",
                ca.display(),
                credentials.display()
            ),
        ),
    )
    .unwrap();
    std::fs::write(&credentials, "marsh-3:wrong\n").unwrap();
    let config = station.to_str().unwrap();
    let events = analyze(&station);

    let (code, out, err) = agent(&["deliver", "--config", config, "--timeout", "4"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(&format!("delivered 0 event(s), {} pending", events.len())),
        "{out}"
    );
    assert!(
        out.contains("refused the station's credentials") && out.contains("credentials_file"),
        "says why and what to check: {out}"
    );
    // Retried, but backing off (0.5 s, 1 s, 2 s … less jitter), not in a busy loop.
    let connections = common::count_before(&out, " connection(s)");
    assert!(
        (2..=8).contains(&connections),
        "{connections} attempts: {out}"
    );

    // A collector over TLS with its own password receives what follows.
    let status = std::process::Command::new("mosquitto_passwd")
        .args(["-b", passwords.to_str().unwrap(), "collector", "c0llect"])
        .status()
        .unwrap();
    assert!(status.success());
    broker_reload(&broker);
    let collector_credentials = dir.path().join("collector.credentials");
    std::fs::write(&collector_credentials, "collector:c0llect\n").unwrap();
    let db = dir.path().join("collected.sqlite");
    let c = std::process::Command::new(common::collector_bin())
        .args([
            "run",
            "--broker",
            &format!("mqtts://localhost:{}", broker.port()),
            "--ca-file",
            ca.to_str().unwrap(),
            "--credentials-file",
            collector_credentials.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
            "--duration",
            "10",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&broker, "Received SUBSCRIBE from warble-collect", 1);

    std::fs::write(&credentials, "marsh-3:s3cret\n").unwrap();
    let (code, out, err) = agent(&["deliver", "--config", config, "--timeout", "20"]);
    assert_eq!(code, 0, "{out}{err}\n{}", broker.log());
    assert!(
        out.contains(&format!("delivered {} event(s), 0 pending", events.len())),
        "{out}"
    );
    let done = c.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&done.stdout).into_owned();
    assert!(
        said.contains(&format!("stored {} new event(s)", events.len())),
        "{said}{}",
        String::from_utf8_lossy(&done.stderr)
    );
}

/// Makes mosquitto re-read its password file (SIGHUP) and waits a moment.
fn broker_reload(broker: &Mosquitto) {
    let pid = broker.pid();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_for(broker, "Reloading config", 1);
}

/// Queues `n` events of `station`, boot `boot`, in the station's outbox (as if detected
/// before a long outage); returns their ids.
fn preload(dir: &Path, station: &str, boot: u64, n: u64) -> BTreeSet<String> {
    let data = dir.join(format!("data-{station}"));
    std::fs::create_dir_all(&data).unwrap();
    let mut outbox =
        warble_agent::outbox::Outbox::open(data.join("outbox.sqlite"), 1 << 30).unwrap();
    let events: Vec<Detection> = (0..n)
        .map(|seq| {
            let mut e = common::sample_event(seq);
            e.station = station.into();
            e.boot = boot;
            e.id = Detection::make_id(station, boot, seq);
            e
        })
        .collect();
    for chunk in events.chunks(500) {
        outbox.push(chunk).unwrap();
    }
    ids(&events)
}

/// `warble-agent run` for `station` with a paced silent microphone; its stderr goes to
/// `dir/agent.log`.
fn start_station(dir: &Path, station: &Path, seconds: u32) -> std::process::Child {
    let (alsa, _writer) = common::paced_microphone(dir, Vec::new(), f64::from(seconds) + 30.0);
    std::process::Command::new(env!("CARGO_BIN_EXE_warble-agent"))
        .env("ALSA_CONFIG_PATH", alsa)
        .args([
            "run",
            "--config",
            station.to_str().unwrap(),
            "--duration",
            &seconds.to_string(),
            "--out",
            dir.join("detections.jsonl").to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("agent.log")).unwrap())
        .spawn()
        .unwrap()
}

/// A collector asking for its gaps every second; its output goes to `dir/collector.log`.
fn start_replaying_collector(port: u16, db: &Path, dir: &Path) -> common::Running {
    common::collector(
        port,
        db,
        90,
        &["--request-replays", "1"],
        &dir.join("collector.log"),
    )
}

/// Waits (at most `limit`) until the collector's store holds `want` ids of `station` and
/// reports no gap for it; returns the ids held and the station's duplicate count.
fn wait_complete(
    db: &Path,
    station: &str,
    want: &BTreeSet<String>,
    limit: Duration,
) -> (BTreeSet<String>, u64) {
    let deadline = Instant::now() + limit;
    loop {
        let mut store = warble_collect::store::Store::open(db).unwrap();
        let report = store.report().unwrap();
        let r = report.iter().find(|r| r.station == station);
        let held = stored_ids(db, station);
        let done = r.is_some_and(|r| r.gaps.is_empty()) && held == *want;
        if done || Instant::now() > deadline {
            return (held, r.map_or(0, |r| r.duplicates));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn log(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

#[test]
fn a_collector_that_missed_events_gets_them_again_from_the_station() {
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let station = common::station(dir.path(), "marsh-9");
    common::deliver_to(&station, broker.port(), "heartbeat_s = 5\n");
    let queued = preload(dir.path(), "marsh-9", 1000, 2000);
    // The station delivers everything while no collector listens: the broker acknowledges
    // and, with no subscriber, forgets.
    let mut agent = start_station(dir.path(), &station, 60);
    let outbox = dir.path().join("data-marsh-9").join("outbox.sqlite");
    let deadline = Instant::now() + Duration::from_secs(30);
    while warble_agent::outbox::Outbox::open(&outbox, 1 << 30)
        .unwrap()
        .stats()
        .unwrap()
        .depth
        > 0
    {
        assert!(
            Instant::now() < deadline,
            "{}",
            log(dir.path(), "agent.log")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Garbage on the station's replay topic is ignored and counted; even a message too
    // large to read only costs the presence connection a reconnect.
    wait_for(&broker, "warble/marsh-9/replay (QoS 0)", 1);
    let rejected = |want: usize| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while log(dir.path(), "agent.log")
            .matches("ignored an inbound message")
            .count()
            < want
        {
            assert!(
                Instant::now() < deadline,
                "{}",
                log(dir.path(), "agent.log")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    publish_all(
        broker.port(),
        "prankster",
        "warble/marsh-9/replay",
        vec![
            b"{not json".to_vec(),
            br#"{"boot": 1000, "first": 5, "last": 1}"#.to_vec(),
        ],
    );
    rejected(2);
    // A message larger than the station takes (it tells the broker so at connect, MQTT 5)
    // is dropped by the broker, not sent: the connection stays and reads what follows.
    publish_all(
        broker.port(),
        "prankster",
        "warble/marsh-9/replay",
        vec![vec![b' '; 100 * 1024], b"[]".to_vec()],
    );
    rejected(3);
    assert!(
        !log(dir.path(), "agent.log").contains("too large to read"),
        "{}",
        log(dir.path(), "agent.log")
    );
    // The oldest 100 expire from the station's archive: they can never be sent again.
    let expired = rusqlite::Connection::open(&outbox)
        .unwrap()
        .execute("DELETE FROM sent WHERE seq < 100", [])
        .unwrap();
    assert_eq!(expired, 100);
    let queued: BTreeSet<String> = queued
        .into_iter()
        .filter(|id| id.rsplit(':').next().unwrap().parse::<u64>().unwrap() >= 100)
        .collect();
    // A collector with an empty store learns from the heartbeats what it lacks, asks, and
    // gets all the station still holds from its archive; the rest it reports lost,
    // without asking for it.
    let db = dir.path().join("collected.sqlite");
    let mut collector = start_replaying_collector(broker.port(), &db, dir.path());
    let started = Instant::now();
    let (held, _) = wait_complete(&db, "marsh-9", &queued, Duration::from_secs(40));
    let took = started.elapsed();
    terminate(&mut agent);
    terminate(collector.child());
    let (agent_log, collector_log) = (
        log(dir.path(), "agent.log"),
        log(dir.path(), "collector.log"),
    );
    assert_eq!(
        held.len(),
        queued.len(),
        "agent:\n{agent_log}\ncollector:\n{collector_log}"
    );
    assert_eq!(held, queued);
    assert!(agent_log.contains("queued again"), "{agent_log}");
    assert!(
        collector_log.contains("asked marsh-9 to send boot 1000"),
        "{collector_log}"
    );
    let report = warble_collect::store::Store::open(&db)
        .unwrap()
        .report()
        .unwrap();
    assert_eq!(report[0].lost, [(1000, 0, 99)]);
    let firsts: Vec<u64> = agent_log
        .split("requested")
        .filter_map(|l| l.rsplit(" seq ").next()?.split('–').next()?.parse().ok())
        .collect();
    assert!(!firsts.is_empty(), "{agent_log}");
    assert!(
        firsts.iter().all(|&f| f >= 100),
        "nothing it no longer holds was asked for: {firsts:?}\n{agent_log}"
    );
    eprintln!(
        "replayed {} events to a new collector in {took:.1?}",
        held.len()
    );
    common::report_reliability(
        "delivered with no collector listening, then replayed (the 100 of 2,000 that expired at the station reported lost, not counted here)",
        &db,
        "marsh-9",
        &queued,
    );
}

/// The broker is SIGKILLed while 5,000 events stream through it and started again; the
/// collector must end with every one of them (the broker's own persistence, when on, saves
/// every second; what it loses, heartbeats reveal and replays recover).
fn a_broker_crash_mid_stream_loses_nothing(persistent: bool) {
    let mut broker = if persistent {
        Mosquitto::start().unwrap()
    } else {
        Mosquitto::start_ephemeral().unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let station = common::station(dir.path(), "marsh-8");
    common::deliver_to(&station, broker.port(), "heartbeat_s = 5\n");
    let queued = preload(dir.path(), "marsh-8", 1000, 5000);
    let db = dir.path().join("collected.sqlite");
    let mut collector = start_replaying_collector(broker.port(), &db, dir.path());
    wait_for(&broker, "Received SUBSCRIBE from warble-collect", 1);
    let mut agent = start_station(dir.path(), &station, 90);
    let started = Instant::now();
    // Mid-stream: once 1,000 have arrived.
    let deadline = Instant::now() + Duration::from_secs(30);
    while stored_ids(&db, "marsh-8").len() < 1000 {
        assert!(
            Instant::now() < deadline,
            "{}",
            log(dir.path(), "agent.log")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let at_kill = stored_ids(&db, "marsh-8").len();
    broker.kill().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    broker.restart().unwrap();
    let restarted = Instant::now();
    let (held, duplicates) = wait_complete(&db, "marsh-8", &queued, Duration::from_secs(60));
    let (total, after) = (started.elapsed(), restarted.elapsed());
    terminate(&mut agent);
    terminate(collector.child());
    let (agent_log, collector_log) = (
        log(dir.path(), "agent.log"),
        log(dir.path(), "collector.log"),
    );
    assert_eq!(
        held.len(),
        queued.len(),
        "agent:\n{agent_log}\ncollector:\n{collector_log}"
    );
    assert_eq!(held, queued, "every event, nothing else");
    let replayed: u64 = agent_log
        .lines()
        .filter_map(|l| {
            l.split(": ")
                .nth(1)?
                .split(" event(s) queued again")
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    eprintln!(
        "broker persistence {persistent}: killed at {at_kill} of {} events; complete {after:.1?} after the restart ({total:.1?} in all); {duplicates} duplicate(s) stored once; {replayed} event(s) replayed on request",
        queued.len()
    );
    let run = if persistent {
        "broker SIGKILLed mid-stream (persistence on)"
    } else {
        "broker SIGKILLed mid-stream (no persistence)"
    };
    common::report_reliability(run, &db, "marsh-8", &queued);
}

#[test]
fn a_broker_killed_mid_stream_with_persistence_loses_nothing() {
    a_broker_crash_mid_stream_loses_nothing(true);
}

#[test]
fn a_broker_killed_mid_stream_without_persistence_loses_nothing() {
    a_broker_crash_mid_stream_loses_nothing(false);
}

#[test]
fn collectors_sharing_a_subscription_and_a_postgres_store_keep_every_event_once() {
    let pg = warble_tests::postgres::Postgres::start()
        .expect("PostgreSQL (Debian package postgresql) is installed by scripts/install-deps");
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let station = station_file(dir.path(), broker.port());
    let url = pg.url();
    let (events, outputs) =
        deliver_to_shared_collectors(&broker, &station, [Path::new(&url), Path::new(&url)]);
    let mut stored_total = 0;
    for done in outputs {
        let said = String::from_utf8_lossy(&done.stdout).into_owned();
        assert!(
            done.status.success(),
            "{said}{}\n{}",
            String::from_utf8_lossy(&done.stderr),
            pg.log()
        );
        stored_total += said
            .split("stored ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or_else(|| panic!("a count in {said}"));
    }
    assert_eq!(
        stored_total,
        events.len(),
        "the two stored each event once between them"
    );
    let out = std::process::Command::new(common::collector_bin())
        .args(["report", "--db", &url])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        report.contains(&format!("marsh-3: {} event(s)", events.len()))
            && report.contains("no gaps"),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    common::report_reliability(
        "two collectors sharing a subscription and a PostgreSQL store",
        Path::new(&url),
        "marsh-3",
        &ids(&events),
    );
    // A wrong address is a clear error that names the store but not a password.
    let out = std::process::Command::new(common::collector_bin())
        .args([
            "report",
            "--db",
            "postgres://warble:hunter2@127.0.0.1:1/none",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("postgres://warble@127.0.0.1:1/none"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

/// A broker whose ACL lets anyone publish and read under `warble/` only.
fn broker_allowing_only_warble(dir: &Path) -> Mosquitto {
    let acl = dir.join("acl");
    std::fs::write(&acl, "topic readwrite warble/#\n").unwrap();
    Mosquitto::start_with(&format!(
        "allow_anonymous true\nacl_file {}\n",
        acl.display()
    ))
    .unwrap()
}

/// A broker whose ACL does not let the station publish where it is configured to (a
/// hand-edited prefix, an ACL rendered for another fleet): under MQTT 3.1.1 mosquitto
/// acknowledged the denied publishes and the outbox emptied into the void. Under MQTT 5
/// the PUBACK says "not authorised": delivery stops, says so and keeps every event.
#[test]
fn a_publish_the_broker_denies_keeps_every_event_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_allowing_only_warble(dir.path());
    let station = station_file(dir.path(), broker.port());
    let text = std::fs::read_to_string(&station)
        .unwrap()
        .replace("[storage]", "topic_prefix = \"elsewhere\"\n\n[storage]");
    std::fs::write(&station, text).unwrap();
    let events = analyze(&station);
    assert!(!events.is_empty());

    let config = station.to_str().unwrap();
    let (code, out, err) = agent(&["deliver", "--config", config, "--timeout", "10"]);
    assert_ne!(code, 0, "a denied delivery is a failure: {out}{err}");
    assert!(
        err.contains("not authorised")
            && err.contains("elsewhere/marsh-3/detections")
            && err.contains(&format!("{} event(s) kept", events.len())),
        "says what was refused and that nothing was lost: {out}{err}"
    );
    let outbox = warble_agent::outbox::Outbox::open(
        warble_agent::outbox::path_in(&dir.path().join("data")),
        1 << 30,
    )
    .unwrap();
    assert_eq!(outbox.stats().unwrap().depth, events.len() as u64);

    // Once the prefix is right, the same outbox is delivered in full.
    let text = std::fs::read_to_string(&station)
        .unwrap()
        .replace("topic_prefix = \"elsewhere\"\n", "");
    std::fs::write(&station, text).unwrap();
    let (code, out, err) = agent(&["deliver", "--config", config, "--timeout", "20"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("delivered {} event(s), 0 pending", events.len())),
        "{out}"
    );
}

/// The same refusal for a running station: it says so once, keeps capturing, and every
/// detection it made waits in the outbox.
#[test]
fn a_running_station_whose_publishes_are_denied_keeps_every_detection() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_allowing_only_warble(dir.path());
    let audio = common::demo_excerpt(60);
    let alsa = common::file_microphone(dir.path(), &audio);
    let st = common::station(dir.path(), "denied-1");
    common::deliver_to(&st, broker.port(), "topic_prefix = \"elsewhere\"\n");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_warble-agent"))
        .env("ALSA_CONFIG_PATH", &alsa)
        .args(["run", "--config", st.to_str().unwrap()])
        .args(["--max-samples", &audio.len().to_string()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr
            .matches("refused the station's detections on `elsewhere/denied-1/detections` (not authorised)")
            .count(),
        1,
        "said once: {stderr}"
    );
    let made = common::count_before(&stderr, " detections,");
    assert!(made >= 5, "{stderr}");
    let outbox =
        warble_agent::outbox::Outbox::open(dir.path().join("data-denied-1/outbox.sqlite"), 1 << 30)
            .unwrap();
    assert_eq!(outbox.stats().unwrap().depth, made, "{stderr}");
}

/// `mqtt.client_id` is the id the broker sees (the one an ACL or a session is keyed by);
/// without it, `warble-<station id>`.
#[test]
fn the_broker_sees_the_configured_client_id() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start().unwrap();
    let station = station_file(dir.path(), broker.port());
    let events = analyze(&station);
    let config = station.to_str().unwrap();
    let (code, out, err) = agent(&["deliver", "--config", config, "--timeout", "20"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        broker.log().contains(" as warble-marsh-3 "),
        "{}",
        broker.log()
    );

    let text = std::fs::read_to_string(&station)
        .unwrap()
        .replace("[storage]", "client_id = \"fen-recorder-7\"\n\n[storage]");
    std::fs::write(&station, text).unwrap();
    analyze(&station);
    let (code, out, err) = agent(&["deliver", "--config", config, "--timeout", "20"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("delivered {} event(s), 0 pending", events.len())),
        "{out}"
    );
    let log = broker.log();
    assert!(log.contains(" as fen-recorder-7 "), "{log}");
}
