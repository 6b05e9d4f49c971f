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
//! [`warble_agent::collect::MAX_EVENT_BYTES`] — are acknowledged, ignored and counted.
#![allow(clippy::print_stdout, reason = "a CLI prints its results")]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, Publish};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use warble_agent::collect::{Ingest, Store};

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
}

#[derive(Subcommand)]
enum Command {
    /// Subscribe and store detections until Ctrl-C (or --duration).
    Run {
        /// Broker, `mqtt://host[:port]`.
        #[arg(long)]
        broker: String,
        /// The store (SQLite; created if missing).
        #[arg(long)]
        db: PathBuf,
        /// Topic filter.
        #[arg(long, default_value = "warble/+/detections")]
        topic: String,
        /// Share the subscription with other collectors of this group (`$share/<group>/…`).
        #[arg(long)]
        share: Option<String>,
        /// MQTT client id (keep it stable: the broker keeps the session by it).
        #[arg(long, default_value = "warble-collect")]
        client_id: String,
        /// Stop after this many seconds.
        #[arg(long)]
        duration: Option<f64>,
    },
    /// Per station: events, boots, late arrivals, duplicates and missing sequence numbers.
    Report {
        /// The store.
        #[arg(long)]
        db: PathBuf,
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
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warble-collect: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run {
            broker,
            db,
            topic,
            share,
            client_id,
            duration,
        } => {
            let url =
                warble_config::broker::BrokerUrl::parse(&broker).map_err(anyhow::Error::msg)?;
            if url.tls {
                anyhow::bail!("TLS (mqtts://) is not built yet");
            }
            let filter = match share {
                Some(group) => format!("$share/{group}/{topic}"),
                None => topic,
            };
            let mut store = Store::open(&db)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let stored =
                runtime.block_on(collect(&url, &client_id, &filter, &mut store, duration))?;
            println!("stored {stored} new event(s) in {}", db.display());
        }
        Command::Report { db } => {
            let store = Store::open(&db)?;
            let report = store.report()?;
            if report.is_empty() {
                println!("no events in {}", db.display());
            }
            for r in &report {
                let gaps: Vec<String> = r
                    .gaps
                    .iter()
                    .map(|(b, f, l)| {
                        if f == l {
                            format!("{b}:{f}")
                        } else {
                            format!("{b}:{f}–{l}")
                        }
                    })
                    .collect();
                println!(
                    "{}: {} event(s), boots {:?}, {} late, {} duplicate(s), {}",
                    r.station,
                    r.events,
                    r.boots,
                    r.late,
                    r.duplicates,
                    if gaps.is_empty() {
                        "no gaps".to_owned()
                    } else {
                        format!("missing {}", gaps.join(", "))
                    }
                );
            }
            if let Some(invalid) = report.first().map(|r| r.invalid).filter(|&n| n > 0) {
                println!("{invalid} message(s) were not detection events");
            }
        }
        Command::Export { db, out } => {
            let n = Store::open(&db)?.export_csv(&out)?;
            println!("exported {n} event(s) to {}", out.display());
        }
    }
    Ok(())
}

/// Commits a batch of messages, then queues their acknowledgements.
fn commit(
    store: &mut Store,
    batch: &mut Vec<Publish>,
    unacked: &mut std::collections::VecDeque<Publish>,
) -> anyhow::Result<u64> {
    let results = store.ingest_many(batch.iter().map(|p| p.payload.as_ref()))?;
    let mut stored = 0;
    for (p, r) in batch.iter().zip(&results) {
        match r {
            Ingest::Stored => stored += 1,
            Ingest::Duplicate => {}
            Ingest::Invalid(reason) => eprintln!(
                "ignored a message on {}: {reason}",
                String::from_utf8_lossy(&p.topic)
            ),
        }
    }
    unacked.extend(batch.drain(..));
    Ok(stored)
}

/// Subscribes and stores until the duration ends or Ctrl-C; returns the new events stored.
async fn collect(
    url: &warble_config::broker::BrokerUrl,
    client_id: &str,
    filter: &str,
    store: &mut Store,
    duration: Option<f64>,
) -> anyhow::Result<u64> {
    let mut opts = MqttOptions::new(client_id, &url.host, url.port);
    opts.set_clean_start(false)
        .set_session_expiry_interval(Some(SESSION_EXPIRY_S))
        .set_max_packet_size(Some(MAX_PACKET_BYTES))
        .set_keep_alive(Duration::from_secs(30))
        .set_manual_acks(true);
    let (client, mut eventloop) = AsyncClient::new(opts, 256);
    // Acks wait here when the request queue is full; they go out as the loop polls.
    let mut unacked: std::collections::VecDeque<Publish> = std::collections::VecDeque::new();
    let mut batch: Vec<Publish> = Vec::new();
    let stop = async {
        match duration {
            Some(s) => tokio::time::sleep(Duration::from_secs_f64(s.max(0.0))).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    tokio::pin!(stop);
    let mut stored = 0u64;
    let mut wait = Duration::from_millis(500);
    loop {
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
                stored += commit(store, &mut batch, &mut unacked)?;
                continue;
            }
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                wait = Duration::from_millis(500);
                if !ack.session_present {
                    client
                        .try_subscribe(filter, QoS::AtLeastOnce)
                        .context("subscribing")?;
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                batch.push(p);
                // Messages that arrive together are committed together (one sync, when
                // 16 are waiting — below mosquitto's default of 20 unacknowledged — or
                // none followed for 2 ms), then acknowledged: a failure leaves them all
                // with the broker.
                if batch.len() >= 16 {
                    stored += commit(store, &mut batch, &mut unacked)?;
                }
            }
            Ok(_) => {
                if !batch.is_empty() {
                    stored += commit(store, &mut batch, &mut unacked)?;
                }
            }
            Err(e) => {
                // Not acknowledged: the broker sends them again on the persistent session.
                batch.clear();
                eprintln!("broker: {e}; retrying in {:.1} s", wait.as_secs_f64());
                tokio::select! {
                    _ = &mut stop => break,
                    _ = tokio::time::sleep(wait) => {}
                }
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        }
    }
    Ok(stored)
}
