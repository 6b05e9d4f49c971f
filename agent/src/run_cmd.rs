//! `warble-agent run`: the recorder's wiring. The settings resolved once, the model
//! loaded ([`warble_agent::model::LoadedModel`]), the [`Recorder`] on this thread (live
//! capture → resampling → the streaming front end and model → detections committed to
//! the outbox, then written out), and delivery and presence as tasks of one network
//! runtime. SIGINT/SIGTERM cancel the recorder, which finishes its last window; then the
//! network tasks flush and stop within a bound.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use warble_agent::capture::{Capture, CaptureConfig};
use warble_agent::daily::{DailyFiles, Zone};
use warble_agent::delivery::Delivery;
use warble_agent::health::{Health, StationFacts};
use warble_agent::presence::Presence;
use warble_agent::probation::{Outcome, Verdict};
use warble_agent::recorder::ModelSwitch;
use warble_agent::recorder::{Finished, Latency, Limits, Recorder, RecorderReport, Watchdog};
use warble_agent::settings::{Overrides, Settings};
use warble_agent::updater::{Installed, Updater, UpdaterConfig};
use warble_agent::updates::{Ledger, StartNote};
use warble_core::SampleRate;
use warble_core::bundle::TrustedKeys;

use crate::analyze_cmd::{Session, prepare};

/// `warble-agent run` arguments.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Station file.
    #[arg(long)]
    pub config: PathBuf,
    /// Detections file (default: standard output); they also go to the outbox.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Stop after this many seconds.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Stop after this many captured samples (at the capture rate).
    #[arg(long)]
    pub max_samples: Option<u64>,
    /// Windows per inference call (1: lowest latency).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Also write the captured audio (after mixdown and gain, at the capture rate) to this
    /// WAV file, e.g. to check a new microphone: everything captured, inside the
    /// schedule's listening windows or not.
    #[arg(long)]
    pub record: Option<PathBuf>,
}

/// What a run costs, measured from capture's start: the steady state, not loading and
/// self-testing the model.
struct CostMeter {
    started: Instant,
    cpu: Option<f64>,
    threads: std::collections::BTreeMap<u32, (String, f64)>,
}

impl CostMeter {
    fn start() -> Self {
        Self {
            started: Instant::now(),
            cpu: warble_agent::resources::cpu_seconds(),
            threads: warble_agent::resources::thread_cpu_seconds(),
        }
    }

    /// Says the cost: CPU, memory, window latency, inference per window, and by thread
    /// (`threads_at_end` read before the capture threads end: their time would vanish).
    fn report(
        &self,
        threads_at_end: std::collections::BTreeMap<u32, (String, f64)>,
        health: &Health,
        latency: &Latency,
    ) {
        let wall = self.started.elapsed().as_secs_f64();
        let cpu = match (self.cpu, warble_agent::resources::cpu_seconds()) {
            (Some(a), Some(b)) => b - a,
            _ => f64::NAN,
        };
        let inference_ms = health.inference_us.load(Ordering::Relaxed) as f64
            / 1000.0
            / health.windows.load(Ordering::Relaxed).max(1) as f64;
        tracing::info!(
            "cost: {cpu:.2} CPU-s over {wall:.1} s ({:.2} % of one core), peak RSS {:.1} MB, {}, inference {inference_ms:.2} ms per window",
            100.0 * cpu / wall.max(1e-9),
            warble_agent::resources::peak_rss_bytes().unwrap_or(0) as f64 / 1e6,
            latency.summary(),
        );
        // By thread: the pipeline (main thread) apart from the audio driver's thread, whose
        // cost depends on the sound card (a file-backed test device costs more than
        // hardware).
        let by_thread: Vec<String> = threads_at_end
            .into_iter()
            .filter_map(|(tid, (name, secs))| {
                let before = self.threads.get(&tid).map_or(0.0, |(_, s)| *s);
                let share = 100.0 * (secs - before) / wall.max(1e-9);
                (share >= 0.01).then(|| format!("{name} {share:.2} %"))
            })
            .collect();
        if !by_thread.is_empty() {
            tracing::info!("by thread: {}", by_thread.join(", "));
        }
    }
}

/// Cancels `cancel` on SIGINT or SIGTERM.
async fn watch_signals(cancel: CancellationToken) {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        tracing::error!("SIGTERM cannot be watched: stop the agent with SIGINT");
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => cancel.cancel(),
        _ = term.recv() => cancel.cancel(),
        () = cancel.cancelled() => {}
    }
}

/// What the network side needs to run model updates.
struct UpdatesStart {
    settings: warble_config::station::Updates,
    trusted: TrustedKeys,
    engine: warble_infer::EngineConfig,
    running: warble_core::wire::ModelVersion,
    note: Option<StartNote>,
    handoff: std::sync::mpsc::Sender<Installed>,
}

/// How long the network side gets to finish once the recorder is done: delivery's final
/// flush, presence's goodbye, and a margin.
const NETWORK_STOP: Duration = Duration::from_secs(10);

/// The station's network side: one runtime on one thread (`warble-net`) running the
/// signal watcher, delivery and presence as tasks of one tracker. The recorder stays on
/// the main thread: the audio path never waits on the network.
struct Network {
    runtime: tokio::runtime::Runtime,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    tasks: Vec<(&'static str, tokio::task::JoinHandle<()>)>,
}

impl Network {
    /// Starts the signal watcher (it cancels `cancel`) and, with an `[mqtt]` section,
    /// delivery, presence and model updates.
    fn start(
        st: &warble_config::StationConfig,
        base: &std::path::Path,
        cancel: &CancellationToken,
        health: &Arc<Health>,
        updates: Option<UpdatesStart>,
        facts: StationFacts,
        wake: &Arc<Notify>,
    ) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("warble-net")
            .enable_all()
            .build()
            .context("starting the network runtime")?;
        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let mut tasks = Vec::new();
        let _inside = runtime.enter();
        tasks.push(("signal", tracker.spawn(watch_signals(cancel.clone()))));
        if let Some(mqtt) = &st.mqtt {
            let broker = warble_agent::publish::BrokerConfig::from_station(st, base)?;
            // Opened here: a station whose outbox cannot be opened for delivery does not
            // start (a delivery that ended silently would never send anything).
            let outbox = warble_agent::outbox::Outbox::open(
                warble_agent::outbox::path_in(&st.data_dir),
                st.outbox_quota_bytes,
            )
            .context("opening the outbox for delivery")?;
            let delivery = Delivery::new(
                outbox,
                broker.clone(),
                wake.clone(),
                health.delivery.clone(),
            );
            let stop = shutdown.clone();
            tasks.push((
                "delivery",
                tracker.spawn(async move {
                    if let Err(e) = delivery.run(stop).await {
                        tracing::error!("delivery stopped: {e}");
                    }
                }),
            ));
            if let Some(u) = updates {
                let cfg = UpdaterConfig {
                    broker: broker.clone(),
                    group: st.group.clone(),
                    trusted: u.trusted,
                    revoked: u.settings.revoked_keys.clone(),
                    station: Arc::new(st.clone()),
                    slot_dir: u.settings.slot_dir.clone(),
                    engine: u.engine,
                    probation: u.settings.probation,
                    health: health.clone(),
                };
                let updater =
                    Updater::new(cfg, u.running, u.note, u.handoff).map_err(anyhow::Error::msg)?;
                tasks.push((
                    "model updates",
                    tracker.spawn(updater.run(shutdown.clone())),
                ));
            }
            let presence =
                Presence::new(broker, mqtt.heartbeat, health.clone(), facts, wake.clone());
            tasks.push(("presence", tracker.spawn(presence.run(shutdown.clone()))));
        }
        tracker.close();
        drop(_inside);
        Ok(Self {
            runtime,
            tracker,
            shutdown,
            tasks,
        })
    }

    /// Stops delivery (after its final flush) and presence (after its goodbye), waiting
    /// [`NETWORK_STOP`] at most; returns the tasks that crashed (a bug, not a shutdown
    /// detail: what delivery had not sent stays in the outbox).
    fn stop(self, cancel: &CancellationToken) -> Vec<&'static str> {
        cancel.cancel();
        self.shutdown.cancel();
        let Self {
            runtime,
            tracker,
            tasks,
            ..
        } = self;
        let crashed = runtime.block_on(async {
            if tokio::time::timeout(NETWORK_STOP, tracker.wait())
                .await
                .is_err()
            {
                tracing::warn!(
                    "the network side did not stop within {} s; leaving it",
                    NETWORK_STOP.as_secs()
                );
                return Vec::new();
            }
            let mut crashed = Vec::new();
            for (name, task) in tasks {
                if task.await.is_err() {
                    crashed.push(name);
                }
            }
            crashed
        });
        runtime.shutdown_timeout(Duration::from_secs(1));
        crashed
    }
}

/// Waits for a set clock, then for the audio device, while `keep_waiting` (a stop
/// request, `--duration`) allows; says what it waits for (log, systemd status,
/// heartbeat). `Err`: why nothing was captured.
fn open_capture(
    st: &warble_config::StationConfig,
    health: &Health,
    mut keep_waiting: impl FnMut() -> bool,
) -> Result<Capture, String> {
    // No detection is stamped with a clock that has not been set (see `not_before`).
    let not_before = warble_agent::timeline::not_before();
    let clock_set = warble_agent::timeline::wait_for_clock(
        not_before,
        chrono::Utc::now,
        &mut keep_waiting,
        |clock| {
            let status = format!(
                "waiting for the clock to be set: it reads {}, before this agent was built ({})",
                clock.format("%Y-%m-%d %H:%M:%S UTC"),
                not_before.format("%Y-%m-%d")
            );
            tracing::warn!("{status}; nothing is captured until it is");
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&status)]);
            health.waiting_for_clock.store(true, Ordering::Relaxed);
        },
    );
    health.waiting_for_clock.store(false, Ordering::Relaxed);
    if !clock_set {
        return Err("the clock was never set".into());
    }
    let capture_config = CaptureConfig {
        device: st.device.clone(),
        sample_rate_hz: st.sample_rate_hz,
        channels: st.channels,
        gain_db: st.gain_db,
        ring_samples: (st.buffer.as_secs_f64() * f64::from(st.sample_rate_hz)) as usize,
    };
    let mut last_device_error = None;
    let capture = Capture::start_when_present(&capture_config, keep_waiting, |e, wait| {
        tracing::warn!(
            "waiting for the audio device: {e}; retrying in {:.0} s",
            wait.as_secs_f64()
        );
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&format!(
            "waiting for the audio device: {e}"
        ))]);
        health.waiting_for_device.store(true, Ordering::Relaxed);
        last_device_error = Some(e.to_string());
    });
    health.waiting_for_device.store(false, Ordering::Relaxed);
    capture
        .ok_or_else(|| last_device_error.unwrap_or_else(|| "the audio device never opened".into()))
}

/// The station's clips of detections, if it keeps them (`[output.clips]`).
fn station_clips(
    st: &warble_config::StationConfig,
    model_rate: SampleRate,
    window: u64,
) -> anyhow::Result<Option<warble_agent::clips::Clips>> {
    let Some(c) = &st.clips else {
        return Ok(None);
    };
    let samples = |d: Duration| (d.as_secs_f64() * f64::from(model_rate.hz())) as u64;
    let dir = st.data_dir.join("clips");
    let settings = warble_agent::clips::ClipSettings {
        dir: dir.clone(),
        rate_hz: model_rate.hz(),
        pre_roll: samples(c.pre_roll),
        post_roll: samples(c.post_roll),
        window,
        quota_bytes: c.quota_bytes,
        retention: c.retention,
    };
    warble_agent::clips::Clips::new(settings)
        .map(Some)
        .with_context(|| format!("creating the clip folder {}", dir.display()))
}

/// Says what the run did.
fn say_summary(report: &RecorderReport) {
    tracing::info!(
        "{:.1} s of audio, {} windows, {} detections, {} samples lost to overruns",
        report.audio_seconds,
        report.windows,
        report.sink.events,
        report.overruns
    );
    if report.device_failures > 0 {
        tracing::warn!(
            "the audio device failed {} time(s) (reopened with backoff)",
            report.device_failures
        );
    }
    if let Some(c) = &report.clips {
        tracing::info!(
            "clips: {} written, {} withheld for privacy, {} deleted for quota or retention, {} not written (too large or disk error)",
            c.written,
            c.suppressed,
            c.evicted,
            c.failed
        );
    }
}

/// The model the station starts on and its session: the committed slot if the ledger
/// names one (a model left on probation is abandoned), else `model.bundle`; a slot model
/// that no longer loads is dropped for `model.bundle`, and said.
fn start_model(
    settings: &mut Settings,
    out: Option<&std::path::Path>,
) -> anyhow::Result<(Session, Option<StartNote>)> {
    let Some(updates) = settings.station.as_ref().and_then(|s| s.updates.clone()) else {
        return Ok((prepare(settings, out)?, None));
    };
    std::fs::create_dir_all(&updates.slot_dir).with_context(|| {
        format!(
            "creating the model slot folder {} (model.slot_dir)",
            updates.slot_dir.display()
        )
    })?;
    let configured = settings.bundle.clone();
    let start = Ledger::start(&updates.slot_dir, &configured).map_err(anyhow::Error::msg)?;
    if let Some(note) = &start.note {
        tracing::warn!("{}", note.reason);
    }
    if start.bundle == configured {
        return Ok((prepare(settings, out)?, start.note));
    }
    settings.bundle.clone_from(&start.bundle);
    tracing::info!(
        "starting on the committed model in {}",
        start.bundle.display()
    );
    match prepare(settings, out) {
        Ok(session) => Ok((session, start.note)),
        Err(e) => {
            let reason = format!(
                "the committed model in {} does not load ({e:#}): the station runs model.bundle",
                start.bundle.display()
            );
            tracing::error!("{reason}");
            let active = Ledger::forget_active(&updates.slot_dir).map_err(anyhow::Error::msg)?;
            settings.bundle = configured;
            let session = prepare(settings, out)?;
            let note = active.map(|a| StartNote {
                state: warble_core::wire::ModelState::RolledBack,
                candidate: warble_agent::updates::candidate_named(&a.model),
                reason,
            });
            Ok((session, note))
        }
    }
}

/// Turns each model the updater installed into the recorder's switch (an analyzer with
/// the station's settings), on its own thread; one that cannot be made is rolled back.
fn bridge_models(
    settings: Settings,
    installed: std::sync::mpsc::Receiver<Installed>,
    switches: std::sync::mpsc::Sender<ModelSwitch>,
) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name("warble-switch".into())
        .spawn(move || {
            for Installed { model, trial, .. } in installed {
                let cfg = settings.analyze_config(&model);
                let model_ref = model.model_ref();
                match model.into_analyzer(cfg) {
                    Ok(analyzer) => {
                        let _ = switches.send(ModelSwitch {
                            analyzer,
                            model: model_ref,
                            trial: Some(trial),
                        });
                    }
                    Err(e) => {
                        let outcome = Outcome::RollBack(format!(
                            "cannot analyse with the station's settings: {e}"
                        ));
                        let _ = trial
                            .verdicts
                            .send(Verdict::before_running(model_ref, outcome));
                    }
                }
            }
        })
        .context("starting the model switch thread")?;
    Ok(())
}

pub fn run(args: RunArgs, station: warble_config::StationConfig) -> anyhow::Result<ExitCode> {
    let mut settings = Settings::resolve(Some(station), Overrides::default(), args.batch)?;
    settings.first_reports = true;
    let (
        Session {
            analyzer,
            sink,
            model,
            version,
            boot,
        },
        start_note,
    ) = start_model(&mut settings, args.out.as_deref())?;
    let bridge_settings = settings.clone();
    let trusted = TrustedKeys::read_files(&settings.trusted)?;
    let engine_config = settings.engine.clone();
    let st = settings.station.context("a station file is required")?;
    let model_rate = analyzer.sample_rate();
    // Every detection also goes to the station's files of the day, in each format.
    let formats: Vec<_> = st.formats.iter().map(|&f| f.into()).collect();
    let zone = st.timezone.map_or(Zone::Local, Zone::Named);
    let sink = sink.with_files(
        DailyFiles::new(&st.output_dir, &formats, zone, model_rate.hz()).with_context(|| {
            format!(
                "creating the detection folder {} (output.dir)",
                st.output_dir.display()
            )
        })?,
    );
    let capture_rate = SampleRate::new(st.sample_rate_hz)
        .with_context(|| format!("audio.sample_rate_hz {} is not usable", st.sample_rate_hz))?;
    // A stop request: the recorder finishes its last window, then the rest stops.
    let cancel = CancellationToken::new();
    let base = args.config.parent().unwrap_or(std::path::Path::new("."));
    let health = Arc::new(Health::default());
    let engine = match analyzer.engine().backend() {
        warble_infer::Backend::Ort => warble_core::wire::Engine::Onnxruntime,
        warble_infer::Backend::Tract => warble_core::wire::Engine::Tract,
    };
    let wake = Arc::new(Notify::new());
    let sink = sink.with_wake(wake.clone());
    // Model updates: the updater installs, the bridge makes the analyzer, the recorder
    // switches between two windows and judges the probation.
    let (switch_tx, switch_rx) = std::sync::mpsc::channel();
    let updates = match &st.updates {
        Some(u) => {
            let (installed_tx, installed_rx) = std::sync::mpsc::channel();
            bridge_models(bridge_settings, installed_rx, switch_tx)?;
            Some(UpdatesStart {
                settings: u.clone(),
                trusted,
                engine: engine_config,
                running: version,
                note: start_note,
                handoff: installed_tx,
            })
        }
        None => None,
    };
    let network = Network::start(
        &st,
        base,
        &cancel,
        &health,
        updates,
        StationFacts {
            started: Instant::now(),
            capture_rate_hz: st.sample_rate_hz,
            data_dir: st.data_dir.clone(),
            model,
            engine,
            boot,
        },
        &wake,
    )?;
    // Under systemd (Type=notify): ready once loaded and self-tested, so that waiting for
    // a microphone does not run into the start timeout; a watchdog ping at half the
    // unit's WatchdogSec from the waiting and the capture loops, so a hung pipeline is
    // restarted. Elsewhere: no-ops.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let mut watchdog = Watchdog::from_env();
    let waiting_since = Instant::now();
    let keep_waiting = |watchdog: &mut Watchdog| {
        watchdog.ping_when_due();
        !cancel.is_cancelled()
            && args
                .duration
                .is_none_or(|d| waiting_since.elapsed().as_secs_f64() < d)
    };
    let mut capture = match open_capture(&st, &health, || keep_waiting(&mut watchdog)) {
        Ok(capture) => capture,
        Err(why) => {
            // Asked before the network is stopped (stopping cancels the token too).
            let asked = cancel.is_cancelled();
            network.stop(&cancel);
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
            if asked {
                // Asked to stop (SIGTERM) while waiting: a stop, not a failure.
                tracing::info!(
                    "stopped as asked after {:.1} s, before capture began ({why})",
                    waiting_since.elapsed().as_secs_f64()
                );
                return Ok(ExitCode::SUCCESS);
            }
            anyhow::bail!(
                "stopped after {:.1} s without capturing: {why}",
                waiting_since.elapsed().as_secs_f64()
            );
        }
    };
    tracing::info!(
        "capturing from `{}` at {} Hz (model rate {} Hz), station {}{}",
        st.device,
        st.sample_rate_hz,
        model_rate.hz(),
        st.id.as_str(),
        st.name
            .as_ref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default()
    );
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&format!(
        "capturing from {}",
        st.device
    ))]);
    let clips = station_clips(&st, model_rate, analyzer.window_samples() as u64)?;
    // Fixed times are clock times of the station's zone (the recorder's own if unset),
    // looked up at every check: a daylight-saving change moves them in UTC.
    let (schedule, location, timezone) = (st.schedule.clone(), st.location, st.timezone);
    let listening = Box::new(move |now: chrono::DateTime<chrono::Utc>| match &timezone {
        Some(zone) => schedule.is_active(now, location, zone),
        None => schedule.is_active(now, location, &chrono::Local),
    });
    let recorder = Recorder::new(analyzer, sink, health.clone(), capture_rate)
        .with_model_switches(switch_rx)
        .with_clips(clips)
        .with_recording(args.record.clone())
        .with_schedule(listening)
        .with_watchdog(watchdog)
        .with_limits(Limits {
            duration: args.duration.map(Duration::from_secs_f64),
            max_samples: args.max_samples,
        });
    let cost = CostMeter::start();
    let Finished { report, result } = recorder.run(&mut capture, &cancel);
    // Before the capture threads end (their time would vanish from the per-thread view).
    let threads_at_end = warble_agent::resources::thread_cpu_seconds();
    drop(capture);
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    let crashed = network.stop(&cancel);
    say_summary(&report);
    cost.report(threads_at_end, &health, &report.latency);
    result?;
    if !crashed.is_empty() {
        anyhow::bail!("the {} task crashed", crashed.join(" and "));
    }
    Ok(ExitCode::SUCCESS)
}
