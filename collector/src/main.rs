//! `warble-collect`: the other end of the stations' MQTT delivery. Subscribes to their
//! detections, stores each event once (by id) in SQLite, and reports per station what
//! arrived, what was late, what came twice and which sequence numbers are missing.
//!
//! A message is acknowledged to the broker only after it is committed, and the session is
//! persistent (`clean_session = false`, a fixed client id): while the collector is down
//! the broker keeps its messages, and a crash loses none. Several collectors can share the
//! load with a shared subscription (`--share group` subscribes `$share/group/<topic>`).
//!
//! MQTT 5, for its maximum packet size: the broker never sends this client a message
//! larger than [`MAX_PACKET_BYTES`], so one oversized message cannot wedge the session (a
//! 3.1.1 client can only fail on it, reconnect, and be sent it again, forever). Smaller
//! messages that are not events — malformed, wrong schema, over
//! [`warble_collect::store::MAX_EVENT_BYTES`] — are acknowledged, ignored and counted.
//!
//! Proving nothing was lost: the collector also reads the stations' heartbeats, which say
//! how far their broker acknowledged each boot, so events lost *after* the broker took
//! them (a broker crash, a broker without persistence) show as gaps even at the end of a
//! stream; with `--request-replays` it asks the stations for its gaps again
//! (`<prefix>/<station>/replay`), and they send them from their archive.
#![allow(clippy::print_stdout, reason = "a CLI prints its results")]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, Publish};
use rumqttc::v5::{AsyncClient, Event};
use warble_collect::store::{Ingest, ReplayPlanner, Store};
use warble_config::logging::LogSettings;
use warble_core::wire::{Leaf, StationId, TopicPrefix, Topics};
use warble_mqtt::BrokerArgs;

/// The largest MQTT packet the broker may send the collector.
const MAX_PACKET_BYTES: u32 = 1 << 20;

/// How long the broker keeps the collector's session (and its messages) while it is away:
/// a week.
const SESSION_EXPIRY_S: u32 = 7 * 24 * 3600;

#[derive(Parser)]
#[command(
    name = "warble-collect",
    version,
    about = "Collect Warble detections from MQTT"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// What to log: error, warn, info, debug or trace (RUST_LOG, if set, wins).
    #[arg(long, global = true, default_value = "info",
          value_parser = ["error", "warn", "info", "debug", "trace"])]
    log_level: String,
    /// How to log: text, or one JSON object per line.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant, reason = "parsed once per process")]
enum Command {
    /// Subscribe and store detections until Ctrl-C (or --duration).
    Run {
        #[command(flatten)]
        broker: BrokerArgs,
        /// The store: an SQLite file (created if missing), or a PostgreSQL database shared
        /// by a fleet's collectors, `postgres://user[:password]@host[:port]/database`.
        #[arg(long)]
        db: PathBuf,
        /// Topic prefix of the stations: detections are read from
        /// `<prefix>/+/detections`, the `+` level naming the station that sent each event.
        #[arg(long, default_value = "warble")]
        prefix: String,
        /// Share the subscription with other collectors of this group (`$share/<group>/…`).
        #[arg(long)]
        share: Option<String>,
        /// MQTT client id (keep it stable: the broker keeps the session by it).
        #[arg(long, default_value = "warble-collect")]
        client_id: String,
        /// Stop after this many seconds.
        #[arg(long)]
        duration: Option<f64>,
        /// Every this many seconds, ask stations to send the events this store is missing
        /// again. Only for a store that sees all of a station's events: with --share, only
        /// into a shared PostgreSQL store (separate stores would each ask for the others'
        /// events).
        #[arg(long)]
        request_replays: Option<f64>,
    },
    /// Per station: events, boots, late arrivals, duplicates and missing sequence numbers.
    Report {
        /// The store.
        #[arg(long)]
        db: PathBuf,
    },
    /// Serve the fleet from the store over HTTP: the dashboard at `/`, its JSON under
    /// `/api/`, and `GET /metrics` in the Prometheus text format (until Ctrl-C, SIGTERM or
    /// --duration).
    Serve {
        /// The store `warble-collect run` writes.
        #[arg(long)]
        db: PathBuf,
        /// Address and port to listen on (port 0: any free one; the log says which).
        #[arg(long, default_value = "127.0.0.1:9464")]
        listen: std::net::SocketAddr,
        /// Stop after this many seconds.
        #[arg(long)]
        duration: Option<f64>,
    },
    /// Print each detection as it arrives (species, report, seconds after the sound,
    /// ground truth), then the run's figures: a window onto the stream that stores nothing.
    Watch {
        #[command(flatten)]
        broker: BrokerArgs,
        /// Topic prefix of the stations.
        #[arg(long, default_value = "warble")]
        prefix: String,
        /// Ground truth of the recording the stations hear (`start_s,end_s,code`, seconds
        /// from its first sample): each detection is marked ✓/✗, then precision and recall.
        #[arg(long, requires = "sample_rate")]
        truth: Option<PathBuf>,
        /// The stations' sample rate (Hz): where a detection's samples sit in the
        /// recording, for --truth.
        #[arg(long)]
        sample_rate: Option<u32>,
        /// Stop after this many seconds.
        #[arg(long)]
        duration: Option<f64>,
        /// Stop once every station seen online has said it went offline (a clean stop or
        /// its last will).
        #[arg(long)]
        until_offline: bool,
    },
    /// Write every stored event as CSV.
    Export {
        /// The store.
        #[arg(long)]
        db: PathBuf,
        /// CSV file to write.
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log = LogSettings {
        level: cli.log_level.clone(),
        json: cli.log_format == LogFormat::Json,
    };
    log.install();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if log.json {
                tracing::error!("{e:#}");
            } else {
                eprintln!("warble-collect: {e:#}");
            }
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run {
            broker,
            db,
            prefix,
            share,
            client_id,
            duration,
            request_replays,
        } => {
            let endpoint = broker.endpoint("collector")?;
            if let Some(s) = request_replays {
                anyhow::ensure!(
                    s.is_finite() && s >= 0.5,
                    "--request-replays {s}: at least 0.5 seconds"
                );
                anyhow::ensure!(
                    share.is_none() || warble_collect::store::is_shared_store(&db),
                    "--request-replays with --share needs a store all the sharing collectors \
                     write to (postgres://…): {} sees only this collector's part",
                    db.display()
                );
            }
            // `<prefix>/+/detections`: the level `+` names the station that sent each
            // event (the broker's ACL binds it to the station's credentials); heartbeats
            // and replay requests live beside them.
            let prefix = TopicPrefix::new(&prefix).map_err(|e| anyhow::anyhow!("--prefix: {e}"))?;
            let topic = prefix.filter(Leaf::Detections);
            let filter = match share {
                Some(group) => format!("$share/{group}/{topic}"),
                None => topic,
            };
            let link = Link {
                filter,
                prefix,
                request_replays: request_replays.map(Duration::from_secs_f64),
                endpoint,
            };
            let mut store = Store::open(&db)?;
            // Multi-threaded (one worker) so that store calls can block in place: the
            // PostgreSQL client is synchronous and drives a runtime of its own.
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?;
            let stored = runtime.block_on(collect(&client_id, &link, &mut store, duration))?;
            println!("stored {stored} new event(s) in {}", db.display());
        }
        Command::Report { db } => {
            let mut store = Store::open(&db)?;
            let report = store.report()?;
            if report.is_empty() {
                println!("no events in {}", db.display());
            }
            let ranges = |list: &[(u64, u64, u64)]| -> Vec<String> {
                list.iter()
                    .map(|(b, f, l)| {
                        if f == l {
                            format!("{b}:{f}")
                        } else {
                            format!("{b}:{f}–{l}")
                        }
                    })
                    .collect()
            };
            for r in &report {
                let gaps = ranges(&r.gaps);
                let lost = match ranges(&r.lost) {
                    l if l.is_empty() => String::new(),
                    l => format!("; lost (the station no longer holds them) {}", l.join(", ")),
                };
                let conflicts = match r.conflicts {
                    0 => String::new(),
                    n => format!(", {n} conflict(s)"),
                };
                println!(
                    "{}: {} event(s), boots {:?}, {} late, {} revised, {} duplicate(s){conflicts}, {}",
                    r.station,
                    r.events,
                    r.boots,
                    r.late,
                    r.revisions,
                    r.duplicates,
                    if gaps.is_empty() {
                        "no gaps".to_owned()
                    } else {
                        format!("missing {}", gaps.join(", "))
                    } + &lost
                );
            }
            if let Some(invalid) = report.first().map(|r| r.invalid).filter(|&n| n > 0) {
                println!("{invalid} message(s) were not detection events");
            }
        }
        Command::Watch {
            broker,
            prefix,
            truth,
            sample_rate,
            duration,
            until_offline,
        } => {
            let endpoint = broker.endpoint("subscriber")?;
            let prefix = TopicPrefix::new(&prefix).map_err(|e| anyhow::anyhow!("--prefix: {e}"))?;
            let truth = match (truth, sample_rate) {
                (Some(path), Some(hz)) => Some(warble_collect::watch::Truth {
                    truth: warble_core::truth::GroundTruth::read(&path)?,
                    sample_rate_hz: hz,
                }),
                _ => None,
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let watch = warble_collect::watch::Watch::new(truth);
            let watch = runtime.block_on(watch_stream(
                &endpoint,
                &prefix,
                watch,
                duration,
                until_offline,
            ))?;
            println!();
            for line in watch.summary() {
                println!("{line}");
            }
        }
        Command::Export { db, out } => {
            let n = Store::open(&db)?.export_csv(&out)?;
            println!("exported {n} event(s) to {}", out.display());
        }
        Command::Serve {
            db,
            listen,
            duration,
        } => {
            let store = Store::open(&db)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("listening on {listen}"))?;
                let at = listener.local_addr()?;
                tracing::info!(
                    "serving the fleet of {}: the dashboard on http://{at}/, metrics on http://{at}/metrics",
                    db.display()
                );
                warble_collect::serve::serve(store, listener, stopped(duration)).await?;
                anyhow::Ok(())
            })?;
        }
    }
    Ok(())
}

/// Completes after `duration` seconds, or at Ctrl-C or SIGTERM (how systemd stops a
/// service), whichever comes first.
async fn stopped(duration: Option<f64>) {
    let limit = async {
        match duration {
            Some(s) => tokio::time::sleep(Duration::from_secs_f64(s.max(0.0))).await,
            None => std::future::pending().await,
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = limit => {}
        () = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// What the collector subscribes to and asks for.
struct Link {
    /// Detections (possibly `$share/…`).
    filter: String,
    /// Topic prefix: the filter is `<prefix>/+/detections`.
    prefix: TopicPrefix,
    /// How often to ask for missing events.
    request_replays: Option<Duration>,
    /// The broker, with the collector's login and TLS.
    endpoint: warble_mqtt::Endpoint,
}

/// Publishes this round's replay requests for the store's gaps (see [`ReplayPlanner`]).
fn request_replays(
    store: &mut Store,
    planner: &mut ReplayPlanner,
    client: &AsyncClient,
    prefix: &TopicPrefix,
) -> anyhow::Result<usize> {
    let mut sent = 0;
    for (station, req) in planner.plan(store)? {
        let Ok(id) = StationId::new(&station) else {
            continue; // stored only from checked topics: not reached
        };
        let topic = Topics::new(prefix.clone(), id).topic(Leaf::Replay);
        let payload = serde_json::to_vec(&req)?;
        if client
            .try_publish(topic, QoS::AtLeastOnce, false, payload)
            .is_err()
        {
            break; // the request queue is full: next round
        }
        tracing::info!(
            "asked {station} to send boot {} seq {}–{} again",
            req.boot,
            req.first,
            req.last
        );
        sent += 1;
    }
    Ok(sent)
}

/// Commits a batch of messages, then queues their acknowledgements.
fn commit(
    store: &mut Store,
    batch: &mut Vec<Publish>,
    unacked: &mut std::collections::VecDeque<Publish>,
    prefix: &TopicPrefix,
) -> anyhow::Result<u64> {
    // Heartbeats and statuses (QoS 0) update what the store knows of the stations.
    let mut events = Vec::with_capacity(batch.len());
    for p in batch.drain(..) {
        let topic = String::from_utf8_lossy(&p.topic).into_owned();
        match prefix.parse(&topic) {
            Some((station, Leaf::Heartbeat)) => {
                store.note_heartbeat(station, &p.payload)?;
            }
            Some((station, Leaf::Status)) => {
                store.note_status(station, &p.payload)?;
            }
            // The subscription is `<prefix>/+/detections`: the topic names the sender (a
            // topic that does not is stored under no station: refused as invalid).
            parsed => {
                let station = match parsed {
                    Some((station, Leaf::Detections)) => station.to_owned(),
                    _ => String::new(),
                };
                events.push((station, p));
            }
        }
    }
    let results = store.ingest_many(
        events
            .iter()
            .map(|(station, p)| (station.as_str(), p.payload.as_ref())),
    )?;
    let mut stored = 0;
    for ((_, p), r) in events.iter().zip(&results) {
        let topic = String::from_utf8_lossy(&p.topic);
        match r {
            Ingest::Stored => stored += 1,
            Ingest::Duplicate | Ingest::Revised => {}
            Ingest::Conflict => tracing::warn!(
                "a message on {topic} reuses a stored event's id with other content: kept in the conflicts table, not stored"
            ),
            Ingest::Invalid(reason) => tracing::warn!("ignored a message on {topic}: {reason}"),
        }
    }
    batch.extend(events.into_iter().map(|(_, p)| p));
    unacked.extend(batch.drain(..));
    Ok(stored)
}

/// Prints what arrives until the duration ends, Ctrl-C, or (`until_offline`) every
/// station seen online went offline; returns what was seen.
async fn watch_stream(
    endpoint: &warble_mqtt::Endpoint,
    prefix: &TopicPrefix,
    mut watch: warble_collect::watch::Watch,
    duration: Option<f64>,
    until_offline: bool,
) -> anyhow::Result<warble_collect::watch::Watch> {
    use std::io::Write;
    let mut opts = endpoint.options(&format!("warble-watch-{}", std::process::id()));
    opts.set_clean_start(true)
        .set_max_packet_size(Some(MAX_PACKET_BYTES));
    let (client, mut eventloop) = AsyncClient::new(opts, 16);
    let stop = stopped(duration);
    tokio::pin!(stop);
    let mut backoff = warble_mqtt::reconnect_backoff();
    let mut stdout = std::io::stdout().lock();
    loop {
        let event = tokio::select! {
            _ = &mut stop => break,
            e = eventloop.poll() => e,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff.reset();
                for (leaf, qos) in [
                    (Leaf::Status, QoS::AtMostOnce),
                    (Leaf::Heartbeat, QoS::AtMostOnce),
                    (Leaf::Detections, QoS::AtLeastOnce),
                ] {
                    client.subscribe(prefix.filter(leaf), qos).await?;
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let topic = String::from_utf8_lossy(&p.topic).into_owned();
                match prefix.parse(&topic) {
                    Some((station, Leaf::Detections)) => {
                        let line = watch.detection(station, &p.payload, chrono::Utc::now());
                        writeln!(stdout, "{line}")?;
                        stdout.flush()?;
                    }
                    Some((station, Leaf::Heartbeat)) => watch.heartbeat(station, &p.payload),
                    Some((station, Leaf::Status)) => {
                        if watch.status(station, &p.payload) {
                            tracing::info!("{station}: {}", String::from_utf8_lossy(&p.payload));
                        }
                        if until_offline && watch.all_offline() {
                            break;
                        }
                    }
                    _ => {}
                }
            }
            Ok(_) => {}
            Err(e) => {
                if !retry_after(&e, "subscriber", &mut backoff, &mut stop).await {
                    break;
                }
            }
        }
    }
    Ok(watch)
}

/// Says why the broker connection failed and waits out the backoff; `false` when `stop`
/// completed meanwhile.
async fn retry_after(
    e: &rumqttc::v5::ConnectionError,
    whose: &str,
    backoff: &mut warble_core::backoff::Backoff,
    stop: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> bool {
    let wait = backoff.take();
    tracing::warn!(
        "broker: {}; retrying in {:.1} s",
        warble_mqtt::explain(e, whose, "--credentials-file"),
        wait.as_secs_f64()
    );
    tokio::select! {
        () = stop.as_mut() => false,
        () = tokio::time::sleep(wait) => true,
    }
}

/// Subscribes and stores until the duration ends or Ctrl-C; returns the new events stored.
async fn collect(
    client_id: &str,
    link: &Link,
    store: &mut Store,
    duration: Option<f64>,
) -> anyhow::Result<u64> {
    let prefix = &link.prefix;
    let mut opts = link.endpoint.options(client_id);
    opts.set_clean_start(false)
        .set_session_expiry_interval(Some(SESSION_EXPIRY_S))
        .set_max_packet_size(Some(MAX_PACKET_BYTES))
        .set_manual_acks(true);
    let (client, mut eventloop) = AsyncClient::new(opts, 256);
    // Acks wait here when the request queue is full; they go out as the loop polls.
    let mut unacked: std::collections::VecDeque<Publish> = std::collections::VecDeque::new();
    let mut batch: Vec<Publish> = Vec::new();
    let stop = stopped(duration);
    tokio::pin!(stop);
    let mut stored = 0u64;
    let mut backoff = warble_mqtt::reconnect_backoff();
    let mut replays =
        tokio::time::interval(link.request_replays.unwrap_or(Duration::from_secs(3600)));
    replays.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    replays.tick().await; // the first tick is immediate: give stations a round first
    let mut connected = false;
    let mut planner = ReplayPlanner::default();
    // Subscriptions still to request: the request queue may be full when a session needs
    // them again (after a broker that lost its state), and they must not be dropped.
    let mut subscriptions: Vec<(String, QoS)> = Vec::new();
    loop {
        while let Some((filter, qos)) = subscriptions.first() {
            if client.try_subscribe(filter.clone(), *qos).is_err() {
                break;
            }
            subscriptions.remove(0);
        }
        while let Some(p) = unacked.front() {
            if client.try_ack(p).is_err() {
                break;
            }
            unacked.pop_front();
        }
        let event = tokio::select! {
            _ = &mut stop => break,
            e = eventloop.poll() => e,
            // Nothing more arrived for a moment: commit what is waiting.
            _ = tokio::time::sleep(Duration::from_millis(2)), if !batch.is_empty() => {
                stored += tokio::task::block_in_place(|| commit(store, &mut batch, &mut unacked, prefix))?;
                continue;
            }
            _ = replays.tick(), if connected && link.request_replays.is_some() => {
                tokio::task::block_in_place(|| request_replays(store, &mut planner, &client, prefix))?;
                continue;
            }
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff.reset();
                connected = true;
                // Queued behind acknowledgements of the last connection if need be. The
                // retained statuses come with every subscription (a session kept by an
                // older collector has none).
                subscriptions = vec![(prefix.filter(Leaf::Status), QoS::AtMostOnce)];
                if !ack.session_present {
                    subscriptions.push((link.filter.clone(), QoS::AtLeastOnce));
                    subscriptions.push((prefix.filter(Leaf::Heartbeat), QoS::AtMostOnce));
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                batch.push(p);
                // Messages that arrive together are committed together (one sync, when
                // 16 are waiting — below mosquitto's default of 20 unacknowledged — or
                // none followed for 2 ms), then acknowledged: a failure leaves them all
                // with the broker.
                if batch.len() >= 16 {
                    stored += tokio::task::block_in_place(|| {
                        commit(store, &mut batch, &mut unacked, prefix)
                    })?;
                }
            }
            Ok(_) => {
                if !batch.is_empty() {
                    stored += tokio::task::block_in_place(|| {
                        commit(store, &mut batch, &mut unacked, prefix)
                    })?;
                }
            }
            Err(e) => {
                // Not acknowledged: the broker sends them again on the persistent session.
                batch.clear();
                connected = false;
                if !retry_after(&e, "collector", &mut backoff, &mut stop).await {
                    break;
                }
            }
        }
    }
    Ok(stored)
}
