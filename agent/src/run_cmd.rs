//! `warble-agent run`: the recorder. Live capture → (resampling) → the streaming front
//! end and model → detections, written out and committed to the outbox, while a delivery
//! thread sends the outbox to the broker. SIGINT/SIGTERM stop capture, finish the last
//! window, flush everything and end delivery cleanly.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use warble_agent::capture::{Capture, CaptureConfig};
use warble_agent::daily::{DailyFiles, Zone};
use warble_agent::delivery::{Delivery, DeliveryHealth};
use warble_agent::detect::SpeciesEvent;
use warble_agent::health::{Health, StationFacts};
use warble_agent::output::Row;
use warble_agent::timeline::Timeline;
use warble_core::SampleRate;
use warble_core::audio::StreamResampler;

use crate::analyze_cmd::{AnalyzeArgs, Session, prepare};

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

/// Sets `stop` on SIGINT or SIGTERM.
fn watch_signals(stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal watcher")?;
    std::thread::Builder::new()
        .name("warble-signals".into())
        .spawn(move || {
            runtime.block_on(async {
                let Ok(mut term) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                else {
                    return;
                };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                stop.store(true, Ordering::Relaxed);
            });
        })
        .context("starting the signal watcher")?;
    Ok(())
}

/// systemd's watchdog (`WatchdogSec` in the unit): pinged at half its period by whichever
/// loop is running (waiting for the device, capturing). A no-op outside systemd.
struct Watchdog {
    period: Option<Duration>,
    last: Instant,
}

impl Watchdog {
    fn from_env() -> Self {
        Self {
            period: sd_notify::watchdog_enabled().map(|d| d / 2),
            last: Instant::now(),
        }
    }

    fn ping_when_due(&mut self) {
        if let Some(period) = self.period
            && self.last.elapsed() >= period
        {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            self.last = Instant::now();
        }
    }
}

/// Latency from taking the chunk that completes a window off the ring buffer to that
/// window's detections: front end, model and detector. (Capture adds the sound card's
/// period and the loop's ≤ 5 ms poll on top.) Percentiles in bounded memory: a recorder
/// runs for months.
#[derive(Debug)]
struct Latency(hdrhistogram::Histogram<u64>);

impl Latency {
    fn new() -> anyhow::Result<Self> {
        // 1 µs … 60 s, 2 significant figures: a few kB.
        hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 2)
            .map(Self)
            .map_err(|e| anyhow::anyhow!("latency histogram: {e}"))
    }

    fn record(&mut self, d: Duration) {
        self.0.saturating_record(d.as_micros().max(1) as u64);
    }

    fn ms(&self, quantile: f64) -> f64 {
        self.0.value_at_quantile(quantile) as f64 / 1000.0
    }

    fn summary(&self) -> String {
        if self.0.is_empty() {
            return "no windows classified".into();
        }
        format!(
            "window latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.ms(0.5),
            self.ms(0.99),
            self.0.max() as f64 / 1000.0
        )
    }
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

/// Keeps the station's status and heartbeats on the broker (see
/// [`warble_agent::publish::presence`]).
fn spawn_presence(
    st: &warble_config::StationConfig,
    base: &std::path::Path,
    stop: Arc<AtomicBool>,
    health: Arc<Health>,
    facts: StationFacts,
    wake_delivery: Arc<Notify>,
) -> anyhow::Result<Option<std::thread::JoinHandle<()>>> {
    let Some(mqtt) = &st.mqtt else {
        return Ok(None);
    };
    let interval = mqtt.heartbeat;
    let broker = warble_agent::publish::BrokerConfig::from_station(st, base)?;
    let (outbox_path, quota) = (
        warble_agent::outbox::path_in(&st.data_dir),
        st.outbox_quota_bytes,
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the presence runtime")?;
    let handle = std::thread::Builder::new()
        .name("warble-presence".into())
        .spawn(move || {
            // Its own connection to the outbox: the archive answers replay requests and
            // says how far the broker has acknowledged each boot.
            let outbox = match warble_agent::outbox::Outbox::open(&outbox_path, quota) {
                Ok(o) => Some(std::cell::RefCell::new(o)),
                Err(e) => {
                    tracing::warn!("presence: {e}; replay requests cannot be served");
                    None
                }
            };
            let mut inbound = |msg: warble_agent::publish::Inbound<'_>| {
                use warble_agent::publish::Inbound;
                use warble_core::wire::ReplayRequest;
                let parsed = match msg {
                    Inbound::Replay(payload) => ReplayRequest::parse(payload).map_err(|e| e.to_string()),
                    Inbound::Oversized(size) => Err(format!("{size} bytes, too large to read")),
                };
                match (parsed, &outbox) {
                    (Ok(req), Some(o)) => {
                        health.replay_requests.fetch_add(1, Ordering::Relaxed);
                        match o.borrow_mut().replay(req.boot, req.first, req.last) {
                            Ok(n) => {
                                health.replayed.fetch_add(n, Ordering::Relaxed);
                                wake_delivery.notify_one();
                                tracing::info!(
                                    "replay of boot {} seq {}–{} requested: {n} event(s) queued again",
                                    req.boot, req.first, req.last
                                );
                            }
                            Err(e) => tracing::error!("replay: {e}"),
                        }
                    }
                    (Ok(_), None) => {}
                    (Err(reason), _) => {
                        health.inbound_rejected.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!("ignored an inbound message: {reason}");
                    }
                }
            };
            let beat = || {
                let outbox = outbox.as_ref().map(|o| o.borrow());
                health.heartbeat(&facts, outbox.as_deref())
            };
            runtime.block_on(warble_agent::publish::presence(
                &broker,
                interval,
                stop,
                &beat,
                &mut inbound,
            ));
        })
        .context("starting the presence thread")?;
    Ok(Some(handle))
}

/// Delivers the station's outbox to its broker on a thread of its own, over one
/// long-lived connection woken by `wake` (see [`Delivery`]), until `shutdown`.
fn spawn_delivery(
    st: &warble_config::StationConfig,
    base: &std::path::Path,
    shutdown: CancellationToken,
    wake: Arc<Notify>,
    health: Arc<DeliveryHealth>,
) -> anyhow::Result<Option<std::thread::JoinHandle<()>>> {
    if st.mqtt.is_none() {
        return Ok(None);
    }
    let broker = warble_agent::publish::BrokerConfig::from_station(st, base)?;
    // Opened here: a station whose outbox cannot be opened for delivery does not start
    // (the delivery thread used to end silently, and nothing was ever sent).
    let outbox = warble_agent::outbox::Outbox::open(
        warble_agent::outbox::path_in(&st.data_dir),
        st.outbox_quota_bytes,
    )
    .context("opening the outbox for delivery")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the delivery runtime")?;
    let delivery = Delivery::new(outbox, broker, wake, health);
    let handle = std::thread::Builder::new()
        .name("warble-delivery".into())
        .spawn(move || {
            if let Err(e) = runtime.block_on(delivery.run(shutdown)) {
                tracing::error!("delivery stopped: {e}");
            }
        })
        .context("starting the delivery thread")?;
    Ok(Some(handle))
}

pub fn run(args: RunArgs, station: warble_config::StationConfig) -> anyhow::Result<ExitCode> {
    let analyze_args = AnalyzeArgs::for_station(&args.config, args.out.clone(), args.batch);
    let Session {
        mut analyzer,
        sink,
        station,
        model,
        boot,
        ..
    } = prepare(&analyze_args, Some(station))?;
    let st = station.context("a station file is required")?;
    let model_rate = analyzer.sample_rate();
    // Every detection also goes to the station's files of the day, in each format.
    let formats: Vec<_> = st
        .formats
        .iter()
        .map(|&f| crate::analyze_cmd::output_format(f))
        .collect();
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
    let new_resampler = || -> anyhow::Result<Option<StreamResampler>> {
        if capture_rate == model_rate {
            return Ok(None);
        }
        StreamResampler::new(capture_rate, model_rate)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("resampler: {e:?}"))
    };
    let mut resampler = new_resampler()?;
    let stop = Arc::new(AtomicBool::new(false));
    watch_signals(stop.clone())?;
    let base = args.config.parent().unwrap_or(std::path::Path::new("."));
    let health = Arc::new(Health::default());
    let engine = match analyzer.engine().backend() {
        warble_infer::Backend::Ort => warble_core::wire::Engine::Onnxruntime,
        warble_infer::Backend::Tract => warble_core::wire::Engine::Tract,
    };
    let shutdown = CancellationToken::new();
    let wake = Arc::new(Notify::new());
    let sink = sink.with_wake(wake.clone());
    let delivery = spawn_delivery(
        &st,
        base,
        shutdown.clone(),
        wake.clone(),
        health.delivery.clone(),
    )?;
    let presence = spawn_presence(
        &st,
        base,
        stop.clone(),
        health.clone(),
        StationFacts {
            started: Instant::now(),
            capture_rate_hz: st.sample_rate_hz,
            data_dir: st.data_dir.clone(),
            model,
            engine,
            boot,
        },
        wake.clone(),
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
        !stop.load(Ordering::Relaxed)
            && args
                .duration
                .is_none_or(|d| waiting_since.elapsed().as_secs_f64() < d)
    };
    // No detection is stamped with a clock that has not been set (see `not_before`).
    let not_before = warble_agent::timeline::not_before();
    let clock_set = warble_agent::timeline::wait_for_clock(
        not_before,
        chrono::Utc::now,
        || keep_waiting(&mut watchdog),
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
    let capture_config = CaptureConfig {
        device: st.device.clone(),
        sample_rate_hz: st.sample_rate_hz,
        channels: st.channels,
        gain_db: st.gain_db,
        ring_samples: (st.buffer.as_secs_f64() * f64::from(st.sample_rate_hz)) as usize,
    };
    let mut last_device_error = None;
    let capture = clock_set.then(|| {
        Capture::start_when_present(
            &capture_config,
            || keep_waiting(&mut watchdog),
            |e, wait| {
                tracing::warn!(
                    "waiting for the audio device: {e}; retrying in {:.0} s",
                    wait.as_secs_f64()
                );
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&format!(
                    "waiting for the audio device: {e}"
                ))]);
                health.waiting_for_device.store(true, Ordering::Relaxed);
                last_device_error = Some(e.to_string());
            },
        )
    });
    health.waiting_for_device.store(false, Ordering::Relaxed);
    let Some(mut capture) = capture.flatten() else {
        stop.store(true, Ordering::Relaxed);
        shutdown.cancel();
        for handle in [delivery, presence].into_iter().flatten() {
            let _ = handle.join();
        }
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        anyhow::bail!(
            "stopped after {:.1} s without capturing: {}",
            waiting_since.elapsed().as_secs_f64(),
            if clock_set {
                last_device_error
                    .as_deref()
                    .unwrap_or("the audio device never opened")
            } else {
                "the clock was never set"
            }
        );
    };
    tracing::info!(
        "capturing from `{}` at {} Hz (model rate {} Hz), station {}",
        st.device,
        st.sample_rate_hz,
        model_rate.hz(),
        st.id.as_str()
    );
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&format!(
        "capturing from {}",
        st.device
    ))]);
    let labels = analyzer.labels().clone();
    // Wall-clock times of the listening stretch's samples, anchored chunk by chunk.
    let new_timeline = || Timeline::live(st.sample_rate_hz, model_rate.hz());
    let timeline = std::cell::RefCell::new(new_timeline());
    // Clips of detections (the model-rate audio), planned as events close, written once
    // settled; shared by the event callback and the capture loop.
    let clips = match &st.clips {
        Some(c) => {
            let samples = |d: Duration| (d.as_secs_f64() * f64::from(model_rate.hz())) as u64;
            let dir = st.data_dir.join("clips");
            let settings = warble_agent::clips::ClipSettings {
                dir: dir.clone(),
                rate_hz: model_rate.hz(),
                pre_roll: samples(c.pre_roll),
                post_roll: samples(c.post_roll),
                window: analyzer.window_samples() as u64,
                quota_bytes: c.quota_bytes,
                retention: c.retention,
            };
            Some(
                warble_agent::clips::Clips::new(settings)
                    .with_context(|| format!("creating the clip folder {}", dir.display()))?,
            )
        }
        None => None,
    };
    let clips = std::cell::RefCell::new(clips);
    let cost = CostMeter::start();
    let (mut captured, mut overruns_seen) = (0u64, 0u64);
    let (mut raw, mut chunk) = (Vec::new(), Vec::new());
    // A fatal sink error (the outbox refusing commits for too long) ends the run.
    let problem: std::cell::RefCell<Option<anyhow::Error>> = Default::default();
    let sink = std::cell::RefCell::new(sink);
    let mut on_event = |e: &SpeciesEvent| {
        let clip = clips.borrow_mut().as_mut().map(|c| {
            let at = timeline.borrow().time_at(e.start_sample as f64);
            let code = labels.get(e.class).map_or("unknown", |l| l.code.as_str());
            let name = format!("{}_{code}.wav", at.format("%Y%m%dT%H%M%S%.3fZ"));
            c.plan(e.start_sample, e.end_sample, &name)
        });
        let row = Row {
            file: "live",
            event: e,
            rate_hz: model_rate.hz(),
            clip: clip.as_deref(),
        };
        let mut sink = sink.borrow_mut();
        match sink.emit(&row, &labels, &timeline.borrow()) {
            Ok(Some(_)) => {
                health.detections.fetch_add(1, Ordering::Relaxed);
            }
            Ok(None) => {}
            Err(err) => {
                problem.borrow_mut().get_or_insert(err.into());
            }
        }
        health.note_sink(&sink.stats());
    };
    let mut recording = match &args.record {
        Some(path) => Some(
            hound::WavWriter::create(
                path,
                hound::WavSpec {
                    channels: 1,
                    sample_rate: st.sample_rate_hz,
                    bits_per_sample: 32,
                    sample_format: hound::SampleFormat::Float,
                },
            )
            .with_context(|| format!("creating {}", path.display()))?,
        ),
        None => None,
    };
    // Listening follows the station's schedule: outside its windows captured audio is
    // dropped; each listening stretch is its own stream (its last window classified and
    // its events closed when the window ends).
    // Fixed times are clock times of the station's zone (the recorder's own if unset),
    // looked up at every check: a daylight-saving change moves them in UTC.
    let listening_now = || {
        let now = chrono::Utc::now();
        match &st.timezone {
            Some(zone) => st.schedule.is_active(now, st.location, zone),
            None => st.schedule.is_active(now, st.location, &chrono::Local),
        }
    };
    let mut stream = None;
    let (mut audio_seconds, mut windows) = (0.0, 0u64);
    let mut last_check: Option<Instant> = None;
    let mut latency = Latency::new()?;
    let mut stream_inference = Duration::ZERO;
    let mut end_segment = |stream: Option<warble_agent::analyze::Stream<'_>>,
                           resampler: &mut Option<StreamResampler>,
                           on_event: &mut dyn FnMut(&SpeciesEvent)|
     -> anyhow::Result<()> {
        let Some(mut stream) = stream else {
            return Ok(());
        };
        if let Some(r) = resampler.as_mut() {
            let mut tail = Vec::new();
            r.finish(&mut tail)
                .map_err(|e| anyhow::anyhow!("resampling: {e:?}"))?;
            stream.push(&tail, on_event)?;
        }
        let summary = stream.finish(on_event)?;
        if let Some(c) = clips.borrow_mut().as_mut() {
            c.note_privacy(&summary.privacy_spans);
            c.finish();
        }
        audio_seconds += summary.audio_seconds;
        windows += summary.stats.windows;
        Ok(())
    };
    // The capture loop; an error in it still closes the open events (below), so none is
    // lost to a failing model, resampler or recording.
    let looped: anyhow::Result<()> = loop {
        let done = stop.load(Ordering::Relaxed)
            || args
                .duration
                .is_some_and(|d| cost.started.elapsed().as_secs_f64() >= d)
            || args.max_samples.is_some_and(|m| captured >= m)
            || problem.borrow().is_some();
        if done {
            break Ok(());
        }
        watchdog.ping_when_due();
        if last_check.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            last_check = Some(Instant::now());
            // Events held after a refused outbox commit must not wait for the next call.
            if let Err(err) = sink.borrow_mut().retry() {
                problem.borrow_mut().get_or_insert(err.into());
            }
            health.note_sink(&sink.borrow().stats());
            let active = listening_now();
            if active && stream.is_none() {
                tracing::info!("listening (station schedule)");
                timeline.replace(new_timeline());
                resampler = match new_resampler() {
                    Ok(r) => r,
                    Err(e) => break Err(e),
                };
                stream = Some(analyzer.stream());
                stream_inference = Duration::ZERO;
            } else if !active && stream.is_some() {
                tracing::info!("outside the listening windows: paused");
                if let Err(e) = end_segment(stream.take(), &mut resampler, &mut on_event) {
                    break Err(e);
                }
            }
        }
        raw.clear();
        if capture.read(&mut raw) == 0 {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        if let Some(m) = args.max_samples {
            raw.truncate((m - captured) as usize);
        }
        captured += raw.len() as u64;
        let overruns = capture.overruns();
        let dropped = overruns - overruns_seen;
        overruns_seen = overruns;
        health.captured_samples.store(captured, Ordering::Relaxed);
        health.overruns.store(overruns, Ordering::Relaxed);
        health
            .device_failures
            .store(capture.device_failures(), Ordering::Relaxed);
        let power = raw.iter().map(|x| x * x).sum::<f32>() / raw.len().max(1) as f32;
        let level = 10.0 * power.max(1e-12).log10();
        health.level_dbfs.store(level.to_bits(), Ordering::Relaxed);
        // What is captured, listening or not: a technician checks a microphone at noon
        // on a dawn-only schedule.
        if let Some(w) = recording.as_mut()
            && let Err(e) = raw.iter().try_for_each(|&x| w.write_sample(x))
        {
            break Err(anyhow::Error::from(e).context("writing the recording"));
        }
        let Some(active_stream) = stream.as_mut() else {
            continue;
        };
        timeline
            .borrow_mut()
            .observe(raw.len(), dropped, chrono::Utc::now());
        let samples = match resampler.as_mut() {
            Some(r) => {
                chunk.clear();
                if let Err(e) = r.process(&raw, &mut chunk) {
                    break Err(anyhow::anyhow!("resampling: {e:?}"));
                }
                &chunk
            }
            None => &raw,
        };
        let (took, windows_before) = (Instant::now(), active_stream.windows());
        if let Err(e) = active_stream.push(samples, &mut on_event) {
            break Err(e.into());
        }
        if let Some(c) = clips.borrow_mut().as_mut() {
            c.note_privacy(&active_stream.take_privacy_spans());
            c.push(samples);
        }
        let busy = took.elapsed();
        health
            .busy_us
            .fetch_add(busy.as_micros() as u64, Ordering::Relaxed);
        let classified = active_stream.windows() - windows_before;
        if classified > 0 {
            latency.record(busy);
            health.windows.fetch_add(classified, Ordering::Relaxed);
            let inference = active_stream.inference();
            health.inference_us.fetch_add(
                (inference - stream_inference).as_micros() as u64,
                Ordering::Relaxed,
            );
            stream_inference = inference;
            health
                .latency_p99_us
                .store(latency.0.value_at_quantile(0.99), Ordering::Relaxed);
        }
    };
    let ended = match looped {
        Ok(()) => end_segment(stream.take(), &mut resampler, &mut on_event),
        Err(e) => {
            if let Some(s) = stream.take() {
                s.abandon(&mut on_event);
            }
            Err(e)
        }
    };
    // Held events are committed before any later error returns.
    let finalized = recording
        .map(|w| w.finalize().context("writing the recording"))
        .transpose();
    let sink = sink.into_inner();
    let events = sink.stats().events;
    let finished = sink.finish();
    let overruns = capture.overruns();
    let device_failures = capture.device_failures();
    // Before the capture threads end (their time would vanish from the per-thread view).
    let threads_at_end = warble_agent::resources::thread_cpu_seconds();
    drop(capture);
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    stop.store(true, Ordering::Relaxed);
    shutdown.cancel();
    // A crashed helper thread is a bug, not a shutdown detail: say so and fail the run
    // (what it had not delivered stays in the outbox).
    let mut crashed = Vec::new();
    for (name, handle) in [("delivery", delivery), ("presence", presence)] {
        if handle.is_some_and(|h| h.join().is_err()) {
            crashed.push(name);
        }
    }
    tracing::info!(
        "{audio_seconds:.1} s of audio, {windows} windows, {events} detections, {overruns} samples lost to overruns"
    );
    if device_failures > 0 {
        tracing::warn!("the audio device failed {device_failures} time(s) (reopened with backoff)");
    }
    cost.report(threads_at_end, &health, &latency);
    if let Some(c) = clips.borrow().as_ref() {
        let c = c.stats();
        tracing::info!(
            "clips: {} written, {} withheld for privacy, {} deleted for quota or retention, {} not written (too large or disk error)",
            c.written,
            c.suppressed,
            c.evicted,
            c.failed
        );
    }
    ended?;
    finalized?;
    if let Some(e) = problem.into_inner() {
        return Err(e).context("committing detections");
    }
    finished.context("finishing the detections")?;
    if !crashed.is_empty() {
        anyhow::bail!("the {} thread crashed", crashed.join(" and "));
    }
    Ok(ExitCode::SUCCESS)
}
