//! What a command runs with, resolved once: the station file's settings (low) with the
//! command line's overrides (high), checked here, so that the stages get typed values
//! and no stage looks at the station file and the flags again.

use std::path::{Path, PathBuf};
use std::time::Duration;

use warble_config::StationConfig;
use warble_infer::{EngineChoice, EngineConfig};

use crate::analyze::AnalyzeConfig;
use crate::detect::DetectorConfig;
use crate::model::LoadedModel;
use crate::output::Format;

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The station file has problems (each listed, with where).
    #[error("{problems}\n{path}: {count} problem(s); fix them with `warble-config validate`")]
    Station {
        /// The station file.
        path: String,
        /// Every problem found.
        problems: warble_config::Problems,
        /// How many.
        count: usize,
    },
    /// A command-line value that cannot be used.
    #[error("{0}")]
    Flag(String),
}

/// Reads and validates a station file, its relative paths resolved against its folder.
///
/// # Errors
/// [`SettingsError::Station`] with every problem of the file.
pub fn load_station(path: &Path) -> Result<StationConfig, SettingsError> {
    let mut st = warble_config::load(path).map_err(|problems| SettingsError::Station {
        path: path.display().to_string(),
        count: problems.0.len(),
        problems,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    st.bundle = base.join(&st.bundle);
    st.trusted_keys = st.trusted_keys.iter().map(|k| base.join(k)).collect();
    st.onnxruntime = st.onnxruntime.map(|p| base.join(p));
    st.output_dir = base.join(&st.output_dir);
    Ok(st)
}

/// What the command line may set over the station file; `None`: the station's (or the
/// default without a station file).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// The model bundle.
    pub bundle: Option<PathBuf>,
    /// Keys that may sign it (empty: the station's).
    pub trusted: Vec<PathBuf>,
    /// The detections' output format.
    pub format: Option<Format>,
    /// Seconds between window starts.
    pub hop_s: Option<f64>,
    /// One threshold for every class.
    pub min_confidence: Option<f32>,
    /// One detection per window instead of merged events.
    pub no_merge: bool,
    /// The inference engine.
    pub engine: Option<EngineChoice>,
    /// The ONNX Runtime library.
    pub onnxruntime: Option<PathBuf>,
    /// Inference threads.
    pub threads: Option<usize>,
    /// The station id in event ids.
    pub station: Option<String>,
    /// Where the boot counter and outbox live.
    pub data_dir: Option<PathBuf>,
}

/// The resolved settings of a run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The model bundle.
    pub bundle: PathBuf,
    /// Keys that may sign it.
    pub trusted: Vec<PathBuf>,
    /// How the model runs.
    pub engine: EngineConfig,
    /// The output format of the detections stream.
    pub format: Format,
    /// Seconds between window starts; `None`: the bundle's window (no overlap).
    pub hop_s: Option<f64>,
    /// Windows per inference call.
    pub batch: usize,
    /// The station id in event ids (`local` without one).
    pub station_id: String,
    /// Where the boot counter (and, with a station file, the outbox) live.
    pub data_dir: Option<PathBuf>,
    /// One threshold for every class (the flag's, else the station's).
    min_confidence: Option<f32>,
    /// Consecutive windows of a species merged into one event.
    merge: bool,
    /// Events are also reported at first sight, while still open (a live station: its
    /// subscribers hear of a call in the window that detected it, the final span follows).
    pub first_reports: bool,
    /// The station file's settings, if the run has one: its other detection rules
    /// (thresholds, species lists, merge gap, confirmation) apply as they are.
    pub station: Option<StationConfig>,
}

impl Settings {
    /// The station's settings (if any) with `over` applied, and `batch` windows per call.
    ///
    /// # Errors
    /// [`SettingsError::Flag`] for a value no run can use, or no bundle at all.
    pub fn resolve(
        station: Option<StationConfig>,
        over: Overrides,
        batch: usize,
    ) -> Result<Self, SettingsError> {
        let st = station.as_ref();
        let bundle = match (over.bundle, st) {
            (Some(b), _) => b,
            (None, Some(s)) => s.bundle.clone(),
            (None, None) => {
                return Err(SettingsError::Flag(
                    "--bundle is required without --config".into(),
                ));
            }
        };
        if let Some(c) = over.min_confidence.filter(|c| !(0.0..=1.0).contains(c)) {
            return Err(SettingsError::Flag(format!(
                "--min-confidence {c}: a probability threshold must lie in [0, 1]"
            )));
        }
        let hop_s = over.hop_s.or(st.map(|s| s.hop.as_secs_f64()));
        if let Some(h) = hop_s.filter(|h| !(h.is_finite() && *h > 0.0)) {
            return Err(SettingsError::Flag(format!(
                "--hop {h}: must be positive seconds"
            )));
        }
        if batch == 0 {
            return Err(SettingsError::Flag(
                "--batch 0: at least one window per inference call".into(),
            ));
        }
        let engine = EngineConfig {
            choice: over.engine.unwrap_or(match st.map(|s| s.engine) {
                Some(warble_config::station::Engine::Ort) => EngineChoice::Ort,
                Some(warble_config::station::Engine::Tract) => EngineChoice::Tract,
                Some(warble_config::station::Engine::Auto) | None => EngineChoice::Auto,
            }),
            ort_library: over
                .onnxruntime
                .or_else(|| st.and_then(|s| s.onnxruntime.clone())),
            threads: over.threads.or(st.map(|s| s.threads)).unwrap_or(1),
        };
        Ok(Self {
            trusted: if over.trusted.is_empty() {
                st.map(|s| s.trusted_keys.clone()).unwrap_or_default()
            } else {
                over.trusted
            },
            bundle,
            engine,
            format: over.format.unwrap_or_else(|| {
                st.and_then(|s| s.formats.first())
                    .map_or(Format::Jsonl, |&f| f.into())
            }),
            hop_s,
            batch,
            station_id: over
                .station
                .or(st.map(|s| s.id.as_str().to_owned()))
                .unwrap_or_else(|| "local".to_owned()),
            data_dir: over.data_dir.or(st.map(|s| s.data_dir.clone())),
            min_confidence: over
                .min_confidence
                .or(st.and_then(|s| s.min_confidence.map(|t| t.get()))),
            merge: !over.no_merge && st.is_none_or(|s| s.merge),
            first_reports: false,
            station,
        })
    }

    /// The analysis settings for `model`: durations in its samples, the hop rounded to
    /// its front end's frame grid.
    pub fn analyze_config(&self, model: &LoadedModel) -> AnalyzeConfig {
        let (rate_hz, grid) = model.rate_and_grid();
        let samples = |d: Duration| (d.as_secs_f64() * f64::from(rate_hz)).round() as u64;
        let hop_samples = self.hop_s.map(|h| {
            let frames = ((h * f64::from(rate_hz)) / grid as f64).round().max(1.0) as usize;
            let hop = frames * grid;
            tracing::info!(
                "hop {:.3} s ({hop} samples, a multiple of the {grid}-sample frame hop)",
                hop as f64 / f64::from(rate_hz)
            );
            hop
        });
        let mut detector = DetectorConfig {
            max_event_samples: samples(Duration::from_secs_f64(crate::detect::MAX_EVENT_S)),
            min_confidence: self.min_confidence,
            merge: self.merge,
            first_reports: self.first_reports,
            ..DetectorConfig::default()
        };
        if let Some(s) = &self.station {
            detector.per_species = s
                .thresholds
                .iter()
                .map(|(k, t)| (k.clone(), t.get()))
                .collect();
            detector.include = s.include.iter().cloned().collect();
            detector.exclude = s.exclude.iter().cloned().collect();
            detector.privacy = s.privacy_classes.iter().cloned().collect();
            detector.merge_gap_samples = samples(s.merge_gap);
            detector.confirm_count = s.confirm_count as usize;
            detector.confirm_within_samples = samples(s.confirm_within);
        }
        AnalyzeConfig {
            hop_samples,
            batch: self.batch,
            detector,
        }
    }
}

impl From<warble_config::station::Format> for Format {
    fn from(format: warble_config::station::Format) -> Self {
        match format {
            warble_config::station::Format::Jsonl => Self::Jsonl,
            warble_config::station::Format::Csv => Self::Csv,
            warble_config::station::Format::Raven => Self::Raven,
            warble_config::station::Format::Birdnet => Self::Birdnet,
        }
    }
}
