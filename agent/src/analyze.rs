//! Batch analysis of recordings with a verified bundle: chunked decoding → the streaming
//! front end the live recorder uses → batched inference → [`Detector`] → events.

use std::borrow::BorrowMut;
use std::path::Path;
use std::time::{Duration, Instant};

use warble_core::audio::AudioStream;
use warble_core::bundle::{Bundle, InputSpec, OutputActivation};
use warble_core::frontend::WindowSpec;
use warble_core::{AudioError, FrontEndError, LabelTable, SampleRate, StreamingFrontEnd};
use warble_infer::{Engine, InferError};

use crate::detect::{Detector, DetectorConfig, DetectorStats, SpeciesEvent};

/// Why a file could not be analysed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnalyzeError {
    /// The audio cannot be decoded (the error names the file).
    #[error(transparent)]
    Audio(#[from] AudioError),
    /// The bundle's front end or window does not work.
    #[error(transparent)]
    FrontEnd(#[from] FrontEndError),
    /// Inference failed.
    #[error(transparent)]
    Infer(#[from] InferError),
    /// The bundle asks for something this agent does not do.
    #[error("unsupported bundle: {0}")]
    Unsupported(String),
    /// Raw PCM input failed.
    #[error(transparent)]
    Pcm(#[from] crate::pcm::PcmError),
}

/// Analysis settings.
#[derive(Debug, Clone)]
pub struct AnalyzeConfig {
    /// Samples between window starts (multiple of the front end's hop); `None`: the
    /// window length (no overlap).
    pub hop_samples: Option<usize>,
    /// Windows per inference call.
    pub batch: usize,
    /// Post-processing.
    pub detector: DetectorConfig,
}

impl Default for AnalyzeConfig {
    fn default() -> Self {
        Self {
            hop_samples: None,
            batch: 16,
            detector: DetectorConfig::default(),
        }
    }
}

/// What one file gave.
#[derive(Debug, Clone)]
pub struct FileResult {
    /// Events in the order they closed.
    pub events: Vec<SpeciesEvent>,
    /// Seconds of audio analysed.
    pub audio_seconds: f64,
    /// Wall time.
    pub elapsed: Duration,
    /// Time inside the inference engine.
    pub inference: Duration,
    /// Detector counters.
    pub stats: DetectorStats,
}

/// A bundle ready to analyse recordings.
#[derive(Debug)]
pub struct Analyzer {
    engine: Engine,
    windows: Windower,
    rate: SampleRate,
    /// Model input shape of one window (without the batch axis).
    window_shape: Vec<usize>,
    /// Samples per window, at `rate`.
    window_samples: usize,
    labels: LabelTable,
    thresholds: Vec<f32>,
    sigmoid: bool,
    cfg: AnalyzeConfig,
}

impl Analyzer {
    /// Prepares analysis with a bundle whose self-test has passed in `engine`.
    ///
    /// # Errors
    /// [`AnalyzeError::Unsupported`] for a zero hop; front-end errors (e.g. a hop off the
    /// frame grid).
    pub fn new(bundle: &Bundle, engine: Engine, cfg: AnalyzeConfig) -> Result<Self, AnalyzeError> {
        let m = bundle.manifest();
        let (windows, rate_hz, window_samples, window_shape) = match &m.input {
            InputSpec::Logmel {
                frontend,
                window_samples,
            } => {
                let spec = WindowSpec {
                    length_samples: *window_samples,
                    hop_samples: cfg.hop_samples.unwrap_or(*window_samples),
                };
                let fe = StreamingFrontEnd::new(frontend.clone(), spec)?;
                let (mels, frames) = fe.window_shape();
                let rate = fe.config().sample_rate_hz;
                (
                    Windower::Logmel(Box::new(fe)),
                    rate,
                    *window_samples,
                    vec![1, mels, frames],
                )
            }
            InputSpec::Waveform {
                sample_rate_hz,
                window_samples,
            } => {
                let hop = cfg.hop_samples.unwrap_or(*window_samples);
                if hop == 0 {
                    return Err(AnalyzeError::Unsupported("hop must be positive".into()));
                }
                let w = WaveWindows::new(*window_samples, hop);
                (
                    Windower::Waveform(w),
                    *sample_rate_hz,
                    *window_samples,
                    vec![*window_samples],
                )
            }
        };
        let rate = SampleRate::new(rate_hz)
            .ok_or_else(|| AnalyzeError::Unsupported("sample rate 0".into()))?;
        let thresholds = (0..bundle.labels().len())
            .map(|i| bundle.threshold(i))
            .collect();
        Ok(Self {
            engine,
            windows,
            rate,
            window_shape,
            window_samples,
            labels: bundle.labels().clone(),
            thresholds,
            sigmoid: m.output_activation == OutputActivation::Sigmoid,
            cfg,
        })
    }

    /// Samples in one model window.
    pub fn window_samples(&self) -> usize {
        self.window_samples
    }

    /// Time between window starts.
    pub fn hop(&self) -> Duration {
        let hop = self.cfg.hop_samples.unwrap_or(self.window_samples);
        Duration::from_secs_f64(hop as f64 / f64::from(self.rate.hz()))
    }

    /// The bundle's labels, one per model output.
    pub fn labels(&self) -> &LabelTable {
        &self.labels
    }

    /// Sample rate that sample offsets refer to.
    pub fn sample_rate(&self) -> SampleRate {
        self.rate
    }

    /// Which engine runs.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Starts a continuous stream (a file, or live audio between capture gaps): samples go
    /// in with [`Stream::push`], events come out as they close.
    pub fn stream(&mut self) -> Stream<&mut Self> {
        Stream::over(self)
    }

    /// A stream that owns the analyzer (the recorder's, so that a model update can
    /// replace the analyzer between streams); [`Stream::finish_returning`] and
    /// [`Stream::abandon`] give it back.
    pub fn into_stream(self) -> Stream<Self> {
        Stream::over(self)
    }
}

impl<A: BorrowMut<Analyzer>> Stream<A> {
    fn over(mut analyzer: A) -> Self {
        let a = analyzer.borrow_mut();
        a.windows.reset();
        let per_window: usize = a.window_shape.iter().product();
        let cap = a.cfg.batch.max(1);
        let detector = Detector::new(&a.labels, a.thresholds.clone(), a.cfg.detector.clone());
        Stream {
            detector,
            batch: Batch {
                x: Vec::with_capacity(cap * per_window),
                spans: Vec::with_capacity(cap),
                cap,
            },
            closed: Vec::new(),
            samples: 0,
            inference: Duration::ZERO,
            analyzer,
        }
    }
}

impl Analyzer {
    /// Analyses one file; `on_event` sees each event as soon as it closes (so the events
    /// before a decoding error part-way through are not lost).
    ///
    /// # Errors
    /// [`AnalyzeError`]; the analyzer stays usable for the next file.
    pub fn analyze_file(
        &mut self,
        path: &Path,
        on_event: impl FnMut(&SpeciesEvent),
    ) -> Result<FileResult, AnalyzeError> {
        let mut audio = AudioStream::open(path, self.rate)?;
        self.analyze_source(|chunk| Ok(audio.read_chunk(chunk)?), on_event)
    }

    /// Analyses a stream whose samples, at [`Self::sample_rate`], `read` appends to its
    /// buffer (returning how many, 0 at the end): a decoded file, raw PCM from a pipe.
    ///
    /// # Errors
    /// As [`Self::analyze_file`].
    pub fn analyze_source(
        &mut self,
        mut read: impl FnMut(&mut Vec<f32>) -> Result<usize, AnalyzeError>,
        mut on_event: impl FnMut(&SpeciesEvent),
    ) -> Result<FileResult, AnalyzeError> {
        let started = Instant::now();
        let mut events = Vec::new();
        let mut forward = |e: &SpeciesEvent| {
            events.push(e.clone());
            on_event(e);
        };
        let mut stream = self.stream();
        let mut chunk = Vec::new();
        loop {
            chunk.clear();
            if read(&mut chunk)? == 0 {
                break;
            }
            stream.push(&chunk, &mut forward)?;
        }
        let summary = stream.finish(&mut forward)?;
        Ok(FileResult {
            events,
            audio_seconds: summary.audio_seconds,
            elapsed: started.elapsed(),
            inference: summary.inference,
            stats: summary.stats,
        })
    }

    /// Runs the model on the collected windows and feeds the detector.
    fn flush(
        &mut self,
        batch: &mut Batch,
        detector: &mut Detector,
        events: &mut Vec<SpeciesEvent>,
    ) -> Result<Duration, AnalyzeError> {
        let n = batch.spans.len().min(batch.cap);
        if n == 0 {
            return Ok(Duration::ZERO);
        }
        let per_window: usize = self.window_shape.iter().product();
        let shape: Vec<usize> = std::iter::once(n)
            .chain(self.window_shape.iter().copied())
            .collect();
        let t = Instant::now();
        let out = self.engine.run(&batch.x[..n * per_window], &shape)?;
        let took = t.elapsed();
        let classes = self.labels.len();
        if out.data.len() != n * classes {
            return Err(AnalyzeError::Unsupported(format!(
                "model returned {} values for {n} windows of {classes} classes",
                out.data.len()
            )));
        }
        let length = self.window_samples as u64;
        let mut probs = vec![0.0f32; classes];
        for (w, row) in out.data.chunks_exact(classes).enumerate() {
            for (p, &z) in probs.iter_mut().zip(row) {
                *p = if self.sigmoid {
                    1.0 / (1.0 + (-z).exp())
                } else {
                    z
                };
            }
            let start = batch.spans[w];
            detector.push(start, start + length, &probs, events);
        }
        batch.x.drain(..n * per_window);
        batch.spans.drain(..n);
        Ok(took)
    }
}

/// What a finished stream amounted to.
#[derive(Debug, Clone)]
pub struct StreamSummary {
    /// Seconds of audio pushed.
    pub audio_seconds: f64,
    /// Time inside the inference engine.
    pub inference: Duration,
    /// Detector counters.
    pub stats: DetectorStats,
    /// Privacy-class windows not yet taken with [`Stream::take_privacy_spans`].
    pub privacy_spans: Vec<(u64, u64)>,
}

/// A continuous stream through an [`Analyzer`]: windows → batched inference → detector.
#[derive(Debug)]
pub struct Stream<A: BorrowMut<Analyzer>> {
    analyzer: A,
    detector: Detector,
    batch: Batch,
    closed: Vec<SpeciesEvent>,
    samples: u64,
    inference: Duration,
}

impl<A: BorrowMut<Analyzer>> Stream<A> {
    /// Pushes mono samples at the analyzer's sample rate; runs the model whenever a batch
    /// of windows is complete and hands every event that closes to `on_event`.
    ///
    /// # Errors
    /// [`AnalyzeError::Infer`] when the engine fails.
    pub fn push(
        &mut self,
        pcm: &[f32],
        on_event: &mut dyn FnMut(&SpeciesEvent),
    ) -> Result<(), AnalyzeError> {
        self.samples += pcm.len() as u64;
        let batch = &mut self.batch;
        self.analyzer
            .borrow_mut()
            .windows
            .push(pcm, |start, window| batch.add(start, window));
        while self.batch.full() {
            self.inference += self.analyzer.borrow_mut().flush(
                &mut self.batch,
                &mut self.detector,
                &mut self.closed,
            )?;
        }
        self.closed.drain(..).for_each(|e| on_event(&e));
        Ok(())
    }

    /// Sample spans of the windows in which a privacy class was present, since the last
    /// call (see [`crate::detect::DetectorConfig::privacy`]).
    pub fn take_privacy_spans(&mut self) -> Vec<(u64, u64)> {
        self.detector.take_privacy_spans()
    }

    /// Windows classified so far.
    pub fn windows(&self) -> u64 {
        self.detector.stats().windows
    }

    /// Time spent inside the inference engine so far.
    pub fn inference(&self) -> Duration {
        self.inference
    }

    /// What a probation compares: audio, windows, NaN windows, detecting windows and
    /// inference time so far.
    pub fn figures(&self) -> crate::probation::Figures {
        let stats = self.detector.stats();
        crate::probation::Figures {
            audio_s: self.samples as f64 / f64::from(self.analyzer.borrow().rate.hz()),
            windows: stats.windows,
            non_finite: stats.non_finite_windows,
            detected: stats.detected_windows,
            inference: self.inference,
        }
    }

    /// Ends the stream after a failure: the events still open are closed and reported as
    /// they stand, without classifying what is buffered (the engine may be what failed).
    pub fn abandon(mut self, on_event: &mut dyn FnMut(&SpeciesEvent)) -> A {
        self.detector.finish(&mut self.closed);
        self.closed.drain(..).for_each(|e| on_event(&e));
        self.analyzer
    }

    /// Ends the stream: pads and classifies the last partial window, closes open events.
    ///
    /// # Errors
    /// [`AnalyzeError::Infer`] when the engine fails.
    pub fn finish(
        mut self,
        on_event: &mut dyn FnMut(&SpeciesEvent),
    ) -> Result<StreamSummary, AnalyzeError> {
        self.end(on_event)
    }

    /// [`Self::finish`], giving the analyzer back whatever the outcome.
    pub fn finish_returning(
        mut self,
        on_event: &mut dyn FnMut(&SpeciesEvent),
    ) -> (Result<StreamSummary, AnalyzeError>, A) {
        let summary = self.end(on_event);
        (summary, self.analyzer)
    }

    fn end(
        &mut self,
        on_event: &mut dyn FnMut(&SpeciesEvent),
    ) -> Result<StreamSummary, AnalyzeError> {
        let batch = &mut self.batch;
        self.analyzer
            .borrow_mut()
            .windows
            .finish(|start, window| batch.add(start, window));
        while !self.batch.spans.is_empty() {
            self.inference += self.analyzer.borrow_mut().flush(
                &mut self.batch,
                &mut self.detector,
                &mut self.closed,
            )?;
        }
        self.detector.finish(&mut self.closed);
        self.closed.drain(..).for_each(|e| on_event(&e));
        Ok(StreamSummary {
            audio_seconds: self.samples as f64 / f64::from(self.analyzer.borrow().rate.hz()),
            inference: self.inference,
            stats: self.detector.stats(),
            privacy_spans: self.detector.take_privacy_spans(),
        })
    }
}

/// What the model reads: log-mel windows from the shared streaming front end, or raw
/// audio windows for waveform models.
#[derive(Debug)]
enum Windower {
    Logmel(Box<StreamingFrontEnd>),
    Waveform(WaveWindows),
}

impl Windower {
    fn push(&mut self, pcm: &[f32], mut on_window: impl FnMut(u64, &[f32])) {
        match self {
            Self::Logmel(fe) => {
                fe.push(pcm, |info, features| on_window(info.start_sample, features));
            }
            Self::Waveform(w) => w.push(pcm, on_window),
        }
    }

    fn finish(&mut self, mut on_window: impl FnMut(u64, &[f32])) {
        match self {
            Self::Logmel(fe) => {
                fe.finish(|info, features| on_window(info.start_sample, features));
            }
            Self::Waveform(w) => w.finish(on_window),
        }
    }

    fn reset(&mut self) {
        match self {
            Self::Logmel(fe) => fe.reset(),
            Self::Waveform(w) => w.reset(),
        }
    }
}

/// Fixed-length raw-audio windows with a hop, padded with zeros at the end of a stream
/// exactly as the front end pads its last window.
#[derive(Debug)]
struct WaveWindows {
    length: usize,
    hop: usize,
    buf: Vec<f32>,
    /// Stream offset of `buf[0]`.
    start: u64,
    /// Leading samples of `buf` that an emitted window already covered.
    covered: usize,
    /// Samples to drop before the next window (hop longer than the window).
    skip: usize,
}

impl WaveWindows {
    fn new(length: usize, hop: usize) -> Self {
        Self {
            length,
            hop,
            buf: Vec::with_capacity(length),
            start: 0,
            covered: 0,
            skip: 0,
        }
    }

    fn push(&mut self, mut pcm: &[f32], mut on_window: impl FnMut(u64, &[f32])) {
        while !pcm.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(pcm.len());
                self.skip -= n;
                pcm = &pcm[n..];
                continue;
            }
            let n = (self.length - self.buf.len()).min(pcm.len());
            self.buf.extend_from_slice(&pcm[..n]);
            pcm = &pcm[n..];
            if self.buf.len() == self.length {
                on_window(self.start, &self.buf);
                self.advance();
            }
        }
    }

    fn advance(&mut self) {
        self.start += self.hop as u64;
        if self.hop < self.length {
            self.buf.drain(..self.hop);
            self.covered = self.buf.len();
        } else {
            self.buf.clear();
            self.covered = 0;
            self.skip = self.hop - self.length;
        }
    }

    fn finish(&mut self, mut on_window: impl FnMut(u64, &[f32])) {
        if self.buf.len() > self.covered {
            self.buf.resize(self.length, 0.0);
            on_window(self.start, &self.buf);
        }
        self.reset();
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.start = 0;
        self.covered = 0;
        self.skip = 0;
    }
}

/// Windows waiting for inference (may briefly exceed `cap` when one push emits several).
#[derive(Debug)]
struct Batch {
    x: Vec<f32>,
    spans: Vec<u64>,
    cap: usize,
}

impl Batch {
    fn add(&mut self, start_sample: u64, features: &[f32]) {
        self.x.extend_from_slice(features);
        self.spans.push(start_sample);
    }

    fn full(&self) -> bool {
        self.spans.len() >= self.cap
    }
}

#[cfg(test)]
mod tests {
    use super::WaveWindows;

    fn windows(length: usize, hop: usize, total: usize, chunk: usize) -> Vec<(u64, Vec<f32>)> {
        let pcm: Vec<f32> = (1..=total).map(|i| i as f32).collect();
        let mut w = WaveWindows::new(length, hop);
        let mut out = Vec::new();
        for c in pcm.chunks(chunk) {
            w.push(c, |s, x| out.push((s, x.to_vec())));
        }
        w.finish(|s, x| out.push((s, x.to_vec())));
        out
    }

    #[test]
    fn waveform_windows_hop_overlap_and_pad_the_tail() {
        let w = windows(4, 2, 9, 3);
        let starts: Vec<u64> = w.iter().map(|(s, _)| *s).collect();
        assert_eq!(starts, [0, 2, 4, 6]);
        assert_eq!(w[1].1, [3.0, 4.0, 5.0, 6.0]);
        assert_eq!(w[3].1, [7.0, 8.0, 9.0, 0.0]);
        // Exactly covered: no padded window.
        assert_eq!(windows(4, 4, 8, 5).len(), 2);
        // Hop longer than the window skips samples.
        let w = windows(2, 3, 8, 1);
        assert_eq!(
            w.iter().map(|(s, x)| (*s, x[0])).collect::<Vec<_>>(),
            [(0, 1.0), (3, 4.0), (6, 7.0)]
        );
    }
}
