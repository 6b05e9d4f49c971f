//! Batch analysis of recordings with a verified bundle: chunked decoding → the streaming
//! front end the live recorder uses → batched inference → [`Detector`] → events.

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
    #[error("front end: {0}")]
    FrontEnd(#[from] FrontEndError),
    /// Inference failed.
    #[error(transparent)]
    Infer(#[from] InferError),
    /// The bundle asks for something this agent does not do.
    #[error("unsupported bundle: {0}")]
    Unsupported(String),
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
    frontend: StreamingFrontEnd,
    rate: SampleRate,
    shape: (usize, usize),
    labels: LabelTable,
    thresholds: Vec<f32>,
    sigmoid: bool,
    cfg: AnalyzeConfig,
}

impl Analyzer {
    /// Prepares analysis with a bundle whose self-test has passed in `engine`.
    ///
    /// # Errors
    /// [`AnalyzeError::Unsupported`] for waveform bundles (not yet analysed here) or a hop
    /// off the frame grid; front-end errors.
    pub fn new(bundle: &Bundle, engine: Engine, cfg: AnalyzeConfig) -> Result<Self, AnalyzeError> {
        let m = bundle.manifest();
        let InputSpec::Logmel {
            frontend,
            window_samples,
        } = &m.input
        else {
            return Err(AnalyzeError::Unsupported(
                "waveform-input bundles are not analysed by this version".into(),
            ));
        };
        let hop = cfg.hop_samples.unwrap_or(*window_samples);
        let spec = WindowSpec {
            length_samples: *window_samples,
            hop_samples: hop,
        };
        let frontend = StreamingFrontEnd::new(frontend.clone(), spec)?;
        let rate = SampleRate::new(frontend.config().sample_rate_hz)
            .ok_or_else(|| AnalyzeError::Unsupported("sample rate 0".into()))?;
        let shape = frontend.window_shape();
        let thresholds = (0..bundle.labels().len())
            .map(|i| bundle.threshold(i))
            .collect();
        Ok(Self {
            engine,
            frontend,
            rate,
            shape,
            labels: bundle.labels().clone(),
            thresholds,
            sigmoid: m.output_activation == OutputActivation::Sigmoid,
            cfg,
        })
    }

    /// The bundle's labels.
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

    /// Analyses one file; `on_event` sees each event as soon as it closes.
    ///
    /// # Errors
    /// [`AnalyzeError`]; the analyzer stays usable for the next file.
    pub fn analyze_file(
        &mut self,
        path: &Path,
        mut on_event: impl FnMut(&SpeciesEvent),
    ) -> Result<FileResult, AnalyzeError> {
        let started = Instant::now();
        let mut stream = AudioStream::open(path, self.rate)?;
        let mut detector = Detector::new(
            &self.labels,
            self.thresholds.clone(),
            self.cfg.detector.clone(),
        );
        let per_window = self.shape.0 * self.shape.1;
        let batch_cap = self.cfg.batch.max(1);
        let mut batch = Batch {
            x: Vec::with_capacity(batch_cap * per_window),
            spans: Vec::with_capacity(batch_cap),
            cap: batch_cap,
        };
        let mut events = Vec::new();
        let mut chunk = Vec::new();
        let mut samples = 0u64;
        let mut inference = Duration::ZERO;
        self.frontend.reset();
        let result: Result<(), AnalyzeError> = (|| {
            loop {
                chunk.clear();
                let n = stream.read_chunk(&mut chunk)?;
                if n == 0 {
                    break;
                }
                samples += n as u64;
                self.frontend.push(&chunk, |info, features| {
                    batch.add(info.start_sample, features);
                });
                while batch.full() {
                    inference += self.flush(&mut batch, &mut detector, &mut events)?;
                }
            }
            self.frontend.finish(|info, features| {
                batch.add(info.start_sample, features);
            });
            inference += self.flush(&mut batch, &mut detector, &mut events)?;
            detector.finish(&mut events);
            Ok(())
        })();
        self.frontend.reset();
        result?;
        for e in &events {
            on_event(e);
        }
        Ok(FileResult {
            events,
            audio_seconds: samples as f64 / f64::from(self.rate.hz()),
            elapsed: started.elapsed(),
            inference,
            stats: detector.stats(),
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
        let per_window = self.shape.0 * self.shape.1;
        let t = Instant::now();
        let out = self.engine.run(
            &batch.x[..n * per_window],
            &[n, 1, self.shape.0, self.shape.1],
        )?;
        let took = t.elapsed();
        let classes = self.labels.len();
        if out.data.len() != n * classes {
            return Err(AnalyzeError::Unsupported(format!(
                "model returned {} values for {n} windows of {classes} classes",
                out.data.len()
            )));
        }
        let length = self.frontend.window_spec().length_samples as u64;
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

/// Windows waiting for inference (may briefly exceed `cap` when one push emits several).
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
