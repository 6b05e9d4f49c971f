//! The recorder stage: audio from an [`AudioSource`] → (resampling) → the streaming front
//! end and model → detections, each minted and committed to the outbox by the event sink
//! before anything else sees it, with clips, an optional recording of everything
//! captured, the station's listening schedule and its health figures.
//!
//! It runs on one blocking thread (the audio path never waits on the network) until its
//! cancellation token fires, its source ends, or a limit is reached; then it finishes the
//! last window and closes every open event, so a stop loses nothing it had heard. An error
//! on the way (a failing model, resampler or recording) still closes the open events.

use std::cell::RefCell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use warble_core::SampleRate;
use warble_core::audio::{AudioError, AudioStream, StreamResampler};
use warble_core::event::ModelRef;

use crate::analyze::{AnalyzeError, Analyzer, Stream};
use crate::capture::Capture;
use crate::clips::{ClipStats, Clips};
use crate::detect::SpeciesEvent;
use crate::events::{EventSink, EventSinkError, SinkStats};
use crate::health::Health;
use crate::output::Row;
use crate::probation::{Figures, Judge, Outcome, Trial, Verdict};
use crate::timeline::Timeline;

/// How long the loop waits for audio when none is ready (a sound card delivers a period
/// every few milliseconds).
const IDLE_WAIT: Duration = Duration::from_millis(5);

/// How often the schedule is looked at and held events are retried.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Where the recorder's audio comes from: mono samples at the capture rate, taken as they
/// arrive. Live capture, a recording played through a station, a PCM pipe.
pub trait AudioSource {
    /// Appends every sample waiting now to `out`; returns how many (0: none yet).
    fn read(&mut self, out: &mut Vec<f32>) -> usize;
    /// Samples lost so far because the recorder fell behind.
    fn overruns(&self) -> u64 {
        0
    }
    /// Times the device failed (and was reopened).
    fn device_failures(&self) -> u64 {
        0
    }
    /// Nothing more will come: the recorder finishes.
    fn ended(&self) -> bool {
        false
    }
}

impl AudioSource for Capture {
    fn read(&mut self, out: &mut Vec<f32>) -> usize {
        Capture::read(self, out)
    }
    fn overruns(&self) -> u64 {
        Capture::overruns(self)
    }
    fn device_failures(&self) -> u64 {
        Capture::device_failures(self)
    }
}

/// A recording played as if it were being captured, `chunk` samples at a time (a sound
/// card's period) and as fast as the recorder takes them: a station's whole path, from
/// the front end to the outbox, run on known audio.
#[derive(Debug)]
pub struct FileSource {
    stream: AudioStream,
    chunk: usize,
    /// Decoded samples, the first `taken` of them handed out.
    decoded: Vec<f32>,
    taken: usize,
    ended: bool,
    error: Option<AudioError>,
}

impl FileSource {
    /// Decodes `path` (any format the batch analysis reads), mixed to mono and resampled
    /// to `rate`, handing out `chunk` samples at a time.
    ///
    /// # Errors
    /// The file cannot be opened or decoded.
    pub fn open(path: &Path, rate: SampleRate, chunk: usize) -> Result<Self, AudioError> {
        Ok(Self {
            stream: AudioStream::open(path, rate)?,
            chunk: chunk.max(1),
            decoded: Vec::new(),
            taken: 0,
            ended: false,
            error: None,
        })
    }

    /// The decoding error that ended the file early, if one did.
    pub fn error(&self) -> Option<&AudioError> {
        self.error.as_ref()
    }
}

impl AudioSource for FileSource {
    fn read(&mut self, out: &mut Vec<f32>) -> usize {
        while !self.ended && self.decoded.len() - self.taken < self.chunk {
            self.decoded.drain(..self.taken);
            self.taken = 0;
            match self.stream.read_chunk(&mut self.decoded) {
                Ok(0) => self.ended = true,
                Ok(_) => {}
                Err(e) => {
                    self.error = Some(e);
                    self.ended = true;
                }
            }
        }
        let n = self.chunk.min(self.decoded.len() - self.taken);
        out.extend_from_slice(&self.decoded[self.taken..self.taken + n]);
        self.taken += n;
        n
    }
    fn ended(&self) -> bool {
        self.ended && self.taken == self.decoded.len()
    }
}

/// systemd's watchdog (`WatchdogSec` in the unit): pinged at half its period by whichever
/// loop is running (waiting for the clock or the device, recording). A no-op outside
/// systemd.
#[derive(Debug)]
pub struct Watchdog {
    period: Option<Duration>,
    last: Instant,
}

impl Watchdog {
    /// The watchdog systemd asked for, if any.
    pub fn from_env() -> Self {
        Self {
            period: sd_notify::watchdog_enabled().map(|d| d / 2),
            last: Instant::now(),
        }
    }

    /// Pings systemd if half its period has passed since the last ping.
    pub fn ping_when_due(&mut self) {
        if let Some(period) = self.period
            && self.last.elapsed() >= period
        {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            self.last = Instant::now();
        }
    }
}

/// Latency from taking the chunk that completes a window off the source to that window's
/// detections: front end, model and detector. (Capture adds the sound card's period and
/// the loop's ≤ 5 ms wait on top.) Percentiles in bounded memory: a recorder runs for
/// months.
#[derive(Debug, Clone)]
pub struct Latency(hdrhistogram::Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        // 1 µs … 60 s, 2 significant figures: a few kB. The bounds are constants that
        // hdrhistogram accepts; a refusal would be a bug caught by every test.
        #[allow(clippy::expect_used)]
        Self(hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 2).expect("valid bounds"))
    }
}

impl Latency {
    fn record(&mut self, d: Duration) {
        self.0.saturating_record(d.as_micros().max(1) as u64);
    }

    /// The latency at `quantile` (0–1), ms.
    pub fn ms(&self, quantile: f64) -> f64 {
        self.0.value_at_quantile(quantile) as f64 / 1000.0
    }

    /// p50, p99 and max in words.
    pub fn summary(&self) -> String {
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

/// Why a recording run failed. Whatever it had heard was still closed and committed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecorderError {
    /// The model or front end failed.
    #[error(transparent)]
    Analyze(#[from] AnalyzeError),
    /// Resampling from the capture rate to the model's failed.
    #[error("resampling: {0}")]
    Resample(String),
    /// The recording (`--record`) could not be written.
    #[error("writing the recording {path}: {source}")]
    Recording {
        /// The recording.
        path: PathBuf,
        /// Why.
        source: hound::Error,
    },
    /// The outbox refused commits for too long.
    #[error("committing detections: {0}")]
    Commit(#[source] EventSinkError),
    /// The last held events or the output could not be finished.
    #[error("finishing the detections: {0}")]
    Finish(#[source] EventSinkError),
}

/// When the recorder stops by itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// After this long.
    pub duration: Option<Duration>,
    /// After this many captured samples (at the capture rate).
    pub max_samples: Option<u64>,
}

/// What a recording run did.
#[derive(Debug, Clone, Default)]
pub struct RecorderReport {
    /// Seconds of audio analysed (while listening).
    pub audio_seconds: f64,
    /// Samples taken from the source, listening or not.
    pub captured: u64,
    /// Windows classified.
    pub windows: u64,
    /// The event sink's counters.
    pub sink: SinkStats,
    /// Samples lost to overruns while recording (up to the last chunk taken).
    pub overruns: u64,
    /// Times the audio device failed.
    pub device_failures: u64,
    /// Window latency.
    pub latency: Latency,
    /// What the clips did, if clips are kept.
    pub clips: Option<ClipStats>,
}

/// A finished run: its figures stand whether or not it ended in an error.
#[derive(Debug)]
pub struct Finished {
    /// What it did.
    pub report: RecorderReport,
    /// How it ended.
    pub result: Result<(), RecorderError>,
}

/// Decides whether the station listens at a given time (its schedule).
pub type ListeningFn = Box<dyn Fn(DateTime<Utc>) -> bool>;

/// The recorder: see the module documentation.
pub struct Recorder<W: Write> {
    analyzer: Analyzer,
    sink: EventSink<W>,
    health: Arc<Health>,
    capture_rate: SampleRate,
    clips: Option<Clips>,
    record: Option<PathBuf>,
    limits: Limits,
    listening: ListeningFn,
    watchdog: Option<Watchdog>,
    switches: Option<std::sync::mpsc::Receiver<ModelSwitch>>,
}

/// A model to switch to (a model update that passed its self-test): its analyzer, made
/// with the station's settings, the model its events name, and its probation.
#[derive(Debug)]
pub struct ModelSwitch {
    /// The new model's analyzer.
    pub analyzer: Analyzer,
    /// What its events carry.
    pub model: ModelRef,
    /// Run it on probation beside the previous model (`None`: switch for good).
    pub trial: Option<Trial>,
}

/// Detections of the shadow held during a probation, at most: reported if the candidate
/// is rolled back (the station's record then has what the previous model heard all
/// along), dropped if it is committed.
const MAX_SHADOW_EVENTS: usize = 10_000;

/// A model on probation in the recorder: the previous model's analyzer runs beside it as
/// a shadow (its detections held, not reported), ready to take over again.
struct OnTrial {
    trial: Trial,
    judge: Judge,
    candidate: ModelRef,
    previous: ModelRef,
    previous_labels: warble_core::LabelTable,
    /// The previous model's stream while listening, its analyzer while not.
    shadow: Option<Stream<Analyzer>>,
    shadow_idle: Option<Analyzer>,
    /// Figures of the listening stretches already ended.
    candidate_done: Figures,
    previous_done: Figures,
    /// The shadow's detections (see [`MAX_SHADOW_EVENTS`]).
    held: Vec<SpeciesEvent>,
    /// The candidate failed on live audio (its stream is not pushed again): rolled back
    /// at the next check, which comes at once.
    failed: Option<(String, Figures)>,
}

/// Keeps a closed event of the shadow (a first report is of no use: the event is
/// reported, if ever, after the shadow's stream has closed it).
fn hold(held: &mut Vec<SpeciesEvent>, e: &SpeciesEvent) {
    if e.closed && held.len() < MAX_SHADOW_EVENTS {
        held.push(e.clone());
    }
}

impl OnTrial {
    fn start_shadow(&mut self) {
        if let Some(a) = self.shadow_idle.take() {
            self.shadow = Some(a.into_stream());
        }
    }

    /// Ends the shadow's stretch (its events are not reported).
    fn pause_shadow(&mut self) {
        if let Some(s) = self.shadow.take() {
            self.previous_done = self.previous_done.plus(s.figures());
            let held = &mut self.held;
            let (_, analyzer) = s.finish_returning(&mut |e| hold(held, e));
            self.shadow_idle = Some(analyzer);
        }
    }

    /// The same audio through the previous model. `false`: it failed (it can no longer
    /// take over).
    fn push_shadow(&mut self, samples: &[f32]) -> bool {
        let Some(s) = self.shadow.as_mut() else {
            return true;
        };
        let held = &mut self.held;
        if let Err(e) = s.push(samples, &mut |e| hold(held, e)) {
            tracing::error!(
                "the previous model {} {}, running beside the one on probation, failed: {e}",
                self.previous.id,
                self.previous.version
            );
            self.shadow = None;
            return false;
        }
        true
    }

    fn previous_figures(&self) -> Figures {
        self.previous_done.plus(
            self.shadow
                .as_ref()
                .map(Stream::figures)
                .unwrap_or_default(),
        )
    }

    fn tell(&self, outcome: Outcome, candidate: Figures) {
        let _ = self.trial.verdicts.send(Verdict {
            candidate: self.candidate.clone(),
            outcome,
            candidate_figures: candidate,
            previous_figures: self.previous_figures(),
        });
    }
}

impl<W: Write> std::fmt::Debug for Recorder<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("capture_rate", &self.capture_rate)
            .field("record", &self.record)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// What an event needs on its way out: the sink, clips and the stream's timeline.
struct Outlet<'a, W: Write> {
    sink: &'a RefCell<EventSink<W>>,
    clips: &'a RefCell<Option<Clips>>,
    timeline: &'a RefCell<Timeline>,
    health: &'a Health,
    labels: &'a RefCell<warble_core::LabelTable>,
    rate_hz: u32,
    problem: &'a RefCell<Option<EventSinkError>>,
}

impl<W: Write> Outlet<'_, W> {
    fn event(&self, e: &SpeciesEvent) {
        let labels = self.labels.borrow();
        // A clip is planned once the event's span is known: at its close.
        let clip = self
            .clips
            .borrow_mut()
            .as_mut()
            .filter(|_| e.closed)
            .map(|c| {
                let at = self.timeline.borrow().time_at(e.start_sample as f64);
                let code = labels.get(e.class).map_or("unknown", |l| l.code.as_str());
                let name = format!("{}_{code}.wav", at.format("%Y%m%dT%H%M%S%.3fZ"));
                c.plan(e.start_sample, e.end_sample, &name)
            });
        let row = Row {
            file: "live",
            event: e,
            rate_hz: self.rate_hz,
            clip: clip.as_deref(),
        };
        let mut sink = self.sink.borrow_mut();
        if let Err(err) = sink.emit(&row, &labels, &self.timeline.borrow()) {
            self.problem.borrow_mut().get_or_insert(err);
        }
        self.health.note_sink(&sink.stats());
    }
}

impl<W: Write> Recorder<W> {
    /// Records with `analyzer` from a source at `capture_rate`, handing every detection
    /// to `sink`, counting in `health`; listening always, until cancelled.
    pub fn new(
        analyzer: Analyzer,
        sink: EventSink<W>,
        health: Arc<Health>,
        capture_rate: SampleRate,
    ) -> Self {
        Self {
            analyzer,
            sink,
            health,
            capture_rate,
            clips: None,
            record: None,
            limits: Limits::default(),
            listening: Box::new(|_| true),
            watchdog: None,
            switches: None,
        }
    }

    /// Switches to each model that arrives on `switches`, between two windows: the
    /// current stream ends (its open events close and are committed under the old
    /// model), and the next starts with the new one; events go on in the same boot with
    /// no hole in their seqs. A model at another sample rate is refused (said): the
    /// resampler, timeline and clips are made for the rate the recorder started with.
    #[must_use]
    pub fn with_model_switches(mut self, switches: std::sync::mpsc::Receiver<ModelSwitch>) -> Self {
        self.switches = Some(switches);
        self
    }

    /// Keeps clips of detections (the model-rate audio).
    #[must_use]
    pub fn with_clips(mut self, clips: Option<Clips>) -> Self {
        self.clips = clips;
        self
    }

    /// Also writes everything captured (after mixdown and gain, at the capture rate) to
    /// a WAV file, listening or not.
    #[must_use]
    pub fn with_recording(mut self, path: Option<PathBuf>) -> Self {
        self.record = path;
        self
    }

    /// Stops by itself after these limits.
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Listens only while `listening(now)` holds (the station's schedule); outside, the
    /// audio is dropped and each listening stretch is its own stream.
    #[must_use]
    pub fn with_schedule(mut self, listening: ListeningFn) -> Self {
        self.listening = listening;
        self
    }

    /// Pings systemd's watchdog from the loop.
    #[must_use]
    pub fn with_watchdog(mut self, watchdog: Watchdog) -> Self {
        self.watchdog = Some(watchdog);
        self
    }

    /// Records from `source` until `cancel` fires, the source ends, a limit is reached
    /// or the outbox refuses commits for too long; then finishes the last window, closes
    /// every open event, flushes the sink and says what it did.
    pub fn run(self, source: &mut dyn AudioSource, cancel: &CancellationToken) -> Finished {
        let mut report = RecorderReport::default();
        let result = self.record_into(source, cancel, &mut report);
        report.device_failures = source.device_failures();
        Finished { report, result }
    }

    fn record_into(
        self,
        source: &mut dyn AudioSource,
        cancel: &CancellationToken,
        report: &mut RecorderReport,
    ) -> Result<(), RecorderError> {
        let Self {
            analyzer,
            sink,
            health,
            capture_rate,
            clips,
            record,
            limits,
            listening,
            mut watchdog,
            switches,
        } = self;
        let mut recording = open_recording(record.as_deref(), capture_rate)?;
        let labels = RefCell::new(analyzer.labels().clone());
        let model_rate = analyzer.sample_rate();
        // The analyzer while no stream holds it (outside the listening windows).
        let mut idle = Some(analyzer);
        // Made for each listening stretch (below): a stretch starts from a clean state.
        let mut resampler = None;
        let new_timeline = || Timeline::live(capture_rate.hz(), model_rate.hz());
        let timeline = RefCell::new(new_timeline());
        let clips = RefCell::new(clips);
        let sink = RefCell::new(sink);
        let problem = RefCell::new(None);
        let outlet = Outlet {
            sink: &sink,
            clips: &clips,
            timeline: &timeline,
            health: &health,
            labels: &labels,
            rate_hz: model_rate.hz(),
            problem: &problem,
        };
        let mut on_event = |e: &SpeciesEvent| outlet.event(e);
        let started = Instant::now();
        let (mut raw, mut chunk) = (Vec::new(), Vec::new());
        let mut last_check: Option<Instant> = None;
        let mut meter = Meter::default();
        let mut stream = None;
        let mut trial: Option<OnTrial> = None;
        let looped: Result<(), RecorderError> = loop {
            let done = cancel.is_cancelled()
                || problem.borrow().is_some()
                || limits.duration.is_some_and(|d| started.elapsed() >= d)
                || limits.max_samples.is_some_and(|m| report.captured >= m);
            if done {
                break Ok(());
            }
            if let Some(w) = watchdog.as_mut() {
                w.ping_when_due();
            }
            if last_check.is_none_or(|t| t.elapsed() >= CHECK_EVERY) {
                last_check = Some(Instant::now());
                // Events held after a refused outbox commit must not wait for the next one.
                if let Err(err) = sink.borrow_mut().retry() {
                    problem.borrow_mut().get_or_insert(err);
                }
                health.note_sink(&sink.borrow().stats());
                if let Some(switch) = switches.as_ref().and_then(|rx| rx.try_recv().ok())
                    && let Some(switch) = refuse_switch(switch, model_rate, trial.is_some())
                {
                    // The old stream ends under the old model; the next starts with the new.
                    let old = match end_stretch(
                        stream.take(),
                        &mut resampler,
                        &clips,
                        report,
                        &mut on_event,
                    ) {
                        Ok(analyzer) => analyzer.or_else(|| idle.take()),
                        Err(e) => break Err(e),
                    };
                    let previous = sink.borrow().model().clone();
                    let ModelSwitch {
                        analyzer,
                        model,
                        trial: plan,
                    } = switch;
                    tracing::info!(
                        "switching to model {} {} at a window boundary{}",
                        model.id,
                        model.version,
                        if plan.is_some() { ", on probation" } else { "" }
                    );
                    let previous_labels = labels.replace(analyzer.labels().clone());
                    sink.borrow_mut().switch_model(model.clone());
                    health.note_model(model.clone());
                    let hop = analyzer.hop();
                    idle = Some(analyzer);
                    trial = plan.and_then(|plan| {
                        let Some(old) = old else {
                            // Nothing to compare with or go back to (cannot happen: the
                            // analyzer is in the stream or idle): kept.
                            let _ = plan
                                .verdicts
                                .send(Verdict::before_running(model.clone(), Outcome::Commit));
                            return None;
                        };
                        Some(OnTrial {
                            judge: Judge {
                                length: plan.length,
                                hop,
                            },
                            trial: plan,
                            candidate: model,
                            previous,
                            previous_labels,
                            shadow: None,
                            shadow_idle: Some(old),
                            candidate_done: Figures::default(),
                            previous_done: Figures::default(),
                            held: Vec::new(),
                            failed: None,
                        })
                    });
                }
                let active = listening(Utc::now());
                if active
                    && stream.is_none()
                    && let Some(analyzer) = idle.take()
                {
                    tracing::info!("listening (station schedule)");
                    timeline.replace(new_timeline());
                    resampler = match new_resampler(capture_rate, model_rate) {
                        Ok(r) => r,
                        Err(e) => break Err(e),
                    };
                    stream = Some(analyzer.into_stream());
                    if let Some(t) = trial.as_mut() {
                        t.start_shadow();
                    }
                    meter.stream_inference = Duration::ZERO;
                } else if !active && stream.is_some() {
                    tracing::info!("outside the listening windows: paused");
                    if let Some(t) = trial.as_mut() {
                        let now = stream.as_ref().map(Stream::figures).unwrap_or_default();
                        t.candidate_done = t.candidate_done.plus(now);
                        t.pause_shadow();
                    }
                    match end_stretch(stream.take(), &mut resampler, &clips, report, &mut on_event)
                    {
                        Ok(analyzer) => idle = analyzer,
                        Err(e) => break Err(e),
                    }
                }
                if let Some(t) = trial.as_ref() {
                    let now = stream.as_ref().map(Stream::figures).unwrap_or_default();
                    let (outcome, candidate) = match &t.failed {
                        Some((why, figures)) => (Some(Outcome::RollBack(why.clone())), *figures),
                        None => {
                            let candidate = t.candidate_done.plus(now);
                            let previous = t.previous_figures();
                            (t.judge.judge(&candidate, Some(&previous)), candidate)
                        }
                    };
                    if let Some(outcome) = outcome
                        && let Some(t) = trial.take()
                    {
                        let mut models = Models {
                            stream: &mut stream,
                            idle: &mut idle,
                            labels: &labels,
                            sink: &sink,
                            health: &health,
                            meter: &mut meter,
                        };
                        models.settle_trial(t, outcome, candidate, &mut on_event);
                    }
                }
            }
            raw.clear();
            if source.read(&mut raw) == 0 {
                if source.ended() {
                    break Ok(());
                }
                std::thread::sleep(IDLE_WAIT);
                continue;
            }
            if let Some(m) = limits.max_samples {
                raw.truncate((m - report.captured) as usize);
            }
            let dropped = count_chunk(&*source, &raw, report, &health);
            // What is captured, listening or not: a technician checks a microphone at noon
            // on a dawn-only schedule.
            if let Some(w) = recording.as_mut()
                && let Err(source) = raw.iter().try_for_each(|&x| w.write_sample(x))
            {
                break Err(RecorderError::Recording {
                    path: record.clone().unwrap_or_default(),
                    source,
                });
            }
            let Some(active) = stream.as_mut() else {
                continue;
            };
            timeline
                .borrow_mut()
                .observe(raw.len(), dropped, Utc::now());
            let samples = match resampled(resampler.as_mut(), &raw, &mut chunk) {
                Ok(samples) => samples,
                Err(e) => break Err(e),
            };
            if let Some(t) = trial.as_mut() {
                let took = Instant::now();
                let alive = t.push_shadow(samples);
                health
                    .busy_us
                    .fetch_add(took.elapsed().as_micros() as u64, Ordering::Relaxed);
                if !alive && let Some(t) = trial.take() {
                    tracing::warn!(
                        "{} {} is kept: the previous model cannot take over any more",
                        t.candidate.id,
                        t.candidate.version
                    );
                    let figures = t.candidate_done.plus(active.figures());
                    t.tell(Outcome::Commit, figures);
                }
            }
            if let Err(e) = meter.push(active, samples, &health, &mut on_event) {
                let Some(t) = trial.as_mut() else {
                    break Err(e.into());
                };
                let figures = t.candidate_done.plus(active.figures());
                t.failed = Some((format!("inference failed on live audio: {e}"), figures));
                last_check = None;
                continue;
            }
            if let Some(c) = clips.borrow_mut().as_mut() {
                c.note_privacy(&active.take_privacy_spans());
                c.push(samples);
            }
        };
        report.latency = meter.latency;
        let ended = match looped {
            Ok(()) => end_stretch(stream.take(), &mut resampler, &clips, report, &mut on_event)
                .map(|_| ()),
            Err(e) => {
                if let Some(s) = stream.take() {
                    let _ = s.abandon(&mut on_event);
                }
                Err(e)
            }
        };
        report.clips = clips.borrow().as_ref().map(Clips::stats);
        let recording = recording.map(|w| (w, record.unwrap_or_default()));
        settle(
            recording,
            sink.into_inner(),
            problem.into_inner(),
            report,
            ended,
        )
    }
}

/// The end of a run: the recording closed, the sink's held events committed and its
/// output flushed, then the first error (if any) returned: held events are committed
/// before any error returns.
fn settle<W: Write>(
    recording: Option<(hound::WavWriter<std::io::BufWriter<std::fs::File>>, PathBuf)>,
    sink: EventSink<W>,
    problem: Option<EventSinkError>,
    report: &mut RecorderReport,
    ended: Result<(), RecorderError>,
) -> Result<(), RecorderError> {
    let finalized = recording.map(|(w, path)| {
        w.finalize()
            .map_err(|source| RecorderError::Recording { path, source })
    });
    report.sink = sink.stats();
    let finished = sink.finish();
    ended?;
    finalized.transpose()?;
    if let Some(e) = problem {
        return Err(RecorderError::Commit(e));
    }
    report.sink = finished.map_err(RecorderError::Finish)?;
    Ok(())
}

fn new_resampler(
    from: SampleRate,
    to: SampleRate,
) -> Result<Option<StreamResampler>, RecorderError> {
    if from == to {
        return Ok(None);
    }
    StreamResampler::new(from, to)
        .map(Some)
        .map_err(|e| RecorderError::Resample(format!("{e:?}")))
}

fn open_recording(
    path: Option<&Path>,
    rate: SampleRate,
) -> Result<Option<hound::WavWriter<std::io::BufWriter<std::fs::File>>>, RecorderError> {
    let Some(path) = path else {
        return Ok(None);
    };
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate.hz(),
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    hound::WavWriter::create(path, spec)
        .map(Some)
        .map_err(|source| RecorderError::Recording {
            path: path.to_owned(),
            source,
        })
}

/// Counts a captured chunk (its samples, and the source's overruns and device failures)
/// in `report` and `health`; returns the samples the source dropped since the last one.
fn count_chunk(
    source: &dyn AudioSource,
    raw: &[f32],
    report: &mut RecorderReport,
    health: &Health,
) -> u64 {
    report.captured += raw.len() as u64;
    let overruns = source.overruns();
    let dropped = overruns - report.overruns;
    // Lost while recording: what a source drops after the stop is no loss.
    report.overruns = overruns;
    note_chunk(
        health,
        raw,
        report.captured,
        overruns,
        source.device_failures(),
    );
    dropped
}

/// `raw` at the model's rate: as it is, or through `resampler` into `out`.
fn resampled<'a>(
    resampler: Option<&mut StreamResampler>,
    raw: &'a [f32],
    out: &'a mut Vec<f32>,
) -> Result<&'a [f32], RecorderError> {
    let Some(r) = resampler else {
        return Ok(raw);
    };
    out.clear();
    r.process(raw, out)
        .map_err(|e| RecorderError::Resample(format!("{e:?}")))?;
    Ok(out)
}

/// The health figures of one captured chunk.
fn note_chunk(h: &Health, raw: &[f32], captured: u64, overruns: u64, device_failures: u64) {
    h.captured_samples.store(captured, Ordering::Relaxed);
    h.overruns.store(overruns, Ordering::Relaxed);
    h.device_failures.store(device_failures, Ordering::Relaxed);
    let power = raw.iter().map(|x| x * x).sum::<f32>() / raw.len().max(1) as f32;
    let level = 10.0 * power.max(1e-12).log10();
    h.level_dbfs.store(level.to_bits(), Ordering::Relaxed);
}

/// Times the analysis of each chunk.
#[derive(Default)]
struct Meter {
    latency: Latency,
    /// The open stream's inference time already counted.
    stream_inference: Duration,
}

impl Meter {
    /// Pushes `samples` into `stream`, counting the time, windows and inference.
    fn push(
        &mut self,
        stream: &mut Stream<Analyzer>,
        samples: &[f32],
        health: &Health,
        on_event: &mut dyn FnMut(&SpeciesEvent),
    ) -> Result<(), AnalyzeError> {
        let (took, windows_before) = (Instant::now(), stream.windows());
        stream.push(samples, on_event)?;
        let busy = took.elapsed();
        health
            .busy_us
            .fetch_add(busy.as_micros() as u64, Ordering::Relaxed);
        let classified = stream.windows() - windows_before;
        if classified > 0 {
            self.latency.record(busy);
            health.windows.fetch_add(classified, Ordering::Relaxed);
            let inference = stream.inference();
            health.inference_us.fetch_add(
                (inference - self.stream_inference).as_micros() as u64,
                Ordering::Relaxed,
            );
            self.stream_inference = inference;
            health
                .latency_p99_us
                .store(self.latency.0.value_at_quantile(0.99), Ordering::Relaxed);
        }
        Ok(())
    }
}

/// `switch` unless it is refused: a model at another rate than `model_rate` (the
/// capture path is built for one), or one arriving while another is on probation. A
/// refused switch that asked for probation is told so.
fn refuse_switch(
    switch: ModelSwitch,
    model_rate: SampleRate,
    on_trial: bool,
) -> Option<ModelSwitch> {
    let why = if switch.analyzer.sample_rate() != model_rate {
        format!(
            "it runs at {} Hz, this recorder at {} Hz (restart the agent to run it)",
            switch.analyzer.sample_rate().hz(),
            model_rate.hz()
        )
    } else if on_trial {
        "another model is on probation".to_owned()
    } else {
        return Some(switch);
    };
    tracing::error!(
        "not switching to {} {}: {why}",
        switch.model.id,
        switch.model.version
    );
    if let Some(t) = switch.trial {
        let outcome = Outcome::RollBack(format!("not switched to: {why}"));
        let _ = t
            .verdicts
            .send(Verdict::before_running(switch.model, outcome));
    }
    None
}

/// What a probation's end changes: the running stream or idle analyzer, the labels and
/// model events are minted with, the heartbeat's model, the inference meter.
struct Models<'a, W: Write> {
    stream: &'a mut Option<Stream<Analyzer>>,
    idle: &'a mut Option<Analyzer>,
    labels: &'a RefCell<warble_core::LabelTable>,
    sink: &'a RefCell<EventSink<W>>,
    health: &'a Health,
    meter: &'a mut Meter,
}

impl<W: Write> Models<'_, W> {
    /// Ends probation `t` with `outcome`. Committed: the shadow is dropped. Rolled back:
    /// the candidate's stream is abandoned (its open events close under its name), the
    /// shadow's detections during the probation are reported, and the shadow, which
    /// heard the same audio, carries on as the station's model: no audio goes
    /// unanalysed by it.
    fn settle_trial(
        &mut self,
        t: OnTrial,
        outcome: Outcome,
        figures: Figures,
        on_event: &mut dyn FnMut(&SpeciesEvent),
    ) {
        t.tell(outcome.clone(), figures);
        let Outcome::RollBack(why) = outcome else {
            tracing::info!(
                "{} {} committed after probation: {} windows, {} detecting (the previous model: {})",
                t.candidate.id,
                t.candidate.version,
                figures.windows,
                figures.detected,
                t.previous_figures().detected
            );
            return;
        };
        tracing::warn!(
            "{} {} rolled back: {why}; {} {} runs again",
            t.candidate.id,
            t.candidate.version,
            t.previous.id,
            t.previous.version
        );
        let OnTrial {
            shadow,
            shadow_idle,
            previous,
            previous_labels,
            held,
            ..
        } = t;
        if let Some(s) = self.stream.take() {
            let _ = s.abandon(on_event);
        }
        self.labels.replace(previous_labels);
        self.sink.borrow_mut().switch_model(previous.clone());
        self.health.note_model(previous);
        // What the previous model heard during the probation, reported now.
        held.iter().for_each(&mut *on_event);
        match shadow {
            Some(s) => {
                self.meter.stream_inference = s.inference();
                *self.stream = Some(s);
            }
            None => *self.idle = shadow_idle,
        }
    }
}

/// Ends a listening stretch: the resampler's tail, the last partial window, every open
/// event closed; clips of the stretch settled. The analyzer comes back for the next.
fn end_stretch(
    stream: Option<Stream<Analyzer>>,
    resampler: &mut Option<StreamResampler>,
    clips: &RefCell<Option<Clips>>,
    report: &mut RecorderReport,
    on_event: &mut dyn FnMut(&SpeciesEvent),
) -> Result<Option<Analyzer>, RecorderError> {
    let Some(mut stream) = stream else {
        return Ok(None);
    };
    if let Some(r) = resampler.as_mut() {
        let mut tail = Vec::new();
        r.finish(&mut tail)
            .map_err(|e| RecorderError::Resample(format!("{e:?}")))?;
        stream.push(&tail, on_event)?;
    }
    let (summary, analyzer) = stream.finish_returning(on_event);
    let summary = summary?;
    if let Some(c) = clips.borrow_mut().as_mut() {
        c.note_privacy(&summary.privacy_spans);
        c.finish();
    }
    report.audio_seconds += summary.audio_seconds;
    report.windows += summary.stats.windows;
    Ok(Some(analyzer))
}
