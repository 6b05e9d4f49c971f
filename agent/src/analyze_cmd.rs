//! `warble-agent analyze`: the batch-mode wiring (verification, file walking, output,
//! ground-truth scoring, summary).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use warble_agent::analyze::{AnalyzeError, Analyzer, FileResult};
use warble_agent::detect::SpeciesEvent;
use warble_agent::events::EventSink;
use warble_agent::model::LoadedModel;
use warble_agent::output::{Format, Minter, Row, Writer};
use warble_agent::resources::{cpu_seconds, peak_rss_bytes};
use warble_agent::settings::{Overrides, Settings};
use warble_core::SampleRate;
use warble_core::bundle::TrustedKeys;
use warble_core::event::ModelRef;
use warble_core::truth::GroundTruth;
use warble_infer::EngineChoice;

/// `warble-agent analyze` arguments.
#[derive(clap::Args)]
pub struct AnalyzeArgs {
    /// Audio files or directories; `-` reads raw PCM from standard input (see --pcm-rate).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Sample rate of the raw PCM on standard input, Hz (required with `-`).
    #[arg(long)]
    pub pcm_rate: Option<u32>,
    /// Sample format of the raw PCM on standard input (little-endian).
    #[arg(long, value_enum, default_value = "s16le")]
    pub pcm_format: PcmFormatArg,
    /// Channels of the raw PCM on standard input (interleaved; mixed to mono).
    #[arg(long, default_value_t = 1)]
    pub pcm_channels: u16,
    /// Station file (validated by warble-config): bundle, trusted keys, thresholds,
    /// species lists, detection rules, first output format, station id, data directory
    /// and runtime come from it; flags given as well win.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Model bundle (.warble); required without --config.
    #[arg(long, required_unless_present = "config")]
    pub bundle: Option<PathBuf>,
    /// Trusted public key(s) that may sign the bundle; required without --config.
    #[arg(long = "trusted", required_unless_present = "config")]
    pub trusted: Vec<PathBuf>,
    /// Output file (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Output format (default: jsonl, or the station file's first format).
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// Seconds between window starts (default: the bundle's window, no overlap).
    #[arg(long)]
    pub hop: Option<f64>,
    /// Replace every class's threshold (global sensitivity).
    #[arg(long)]
    pub min_confidence: Option<f32>,
    /// One detection per window instead of merging consecutive windows of a species.
    #[arg(long)]
    pub no_merge: bool,
    /// Inference engine (default: auto, or the station file's).
    #[arg(long, value_enum)]
    pub engine: Option<EngineArg>,
    /// ONNX Runtime library (default: ORT_DYLIB_PATH or the installed one).
    #[arg(long)]
    pub onnxruntime: Option<PathBuf>,
    /// Inference threads, 0: the engine decides (default: 1, or the station file's).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Windows per inference call.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Station id used in event ids (default: `local`, or the station file's).
    #[arg(long)]
    pub station: Option<String>,
    /// Data directory holding the station's boot counter: each run takes the next boot
    /// number, so event ids never repeat. Without it, runs use boot 0.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Wall-clock time of each file's first sample (RFC 3339); default: the file's
    /// modification time.
    #[arg(long)]
    pub recorded_at: Option<String>,
    /// Ground truth CSV (`start_s,end_s,code`) to score the detections against
    /// (prints precision and recall).
    #[arg(long)]
    pub truth: Option<PathBuf>,
}

impl AnalyzeArgs {
    /// What these flags set over the station file.
    fn overrides(&self) -> Overrides {
        Overrides {
            bundle: self.bundle.clone(),
            trusted: self.trusted.clone(),
            format: self.format.map(|f| match f {
                FormatArg::Jsonl => Format::Jsonl,
                FormatArg::Csv => Format::Csv,
                FormatArg::Raven => Format::Raven,
                FormatArg::Birdnet => Format::Birdnet,
            }),
            hop_s: self.hop,
            min_confidence: self.min_confidence,
            no_merge: self.no_merge,
            engine: self.engine.map(|e| match e {
                EngineArg::Auto => EngineChoice::Auto,
                EngineArg::Ort => EngineChoice::Ort,
                EngineArg::Tract => EngineChoice::Tract,
            }),
            onnxruntime: self.onnxruntime.clone(),
            threads: self.threads,
            station: self.station.clone(),
            data_dir: self.data_dir.clone(),
        }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum FormatArg {
    Jsonl,
    Csv,
    Raven,
    Birdnet,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum PcmFormatArg {
    /// Signed 16-bit integers.
    S16le,
    /// 32-bit floats.
    F32le,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum EngineArg {
    Auto,
    Ort,
    Tract,
}

/// The path that means raw PCM on standard input.
const STDIN: &str = "-";

const AUDIO_EXTENSIONS: [&str; 6] = ["wav", "flac", "ogg", "oga", "mp3", "wave"];

/// Audio files under `paths` (directories recursively), sorted per directory.
fn collect(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("reading directory {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out)?;
            } else if p
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| AUDIO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut files)?;
        } else {
            files.push(p.clone());
        }
    }
    Ok(files)
}

fn recorded_at(arg: Option<&str>, file: &Path) -> anyhow::Result<DateTime<Utc>> {
    if let Some(text) = arg {
        return Ok(DateTime::parse_from_rfc3339(text)
            .with_context(|| format!("--recorded-at `{text}` is not RFC 3339"))?
            .to_utc());
    }
    if file == STDIN {
        return Ok(Utc::now());
    }
    let modified = std::fs::metadata(file)
        .and_then(|m| m.modified())
        .with_context(|| format!("modification time of {}", file.display()))?;
    Ok(DateTime::<Utc>::from(modified))
}

/// What a run of the analysis needs: the analyzer of the verified, self-tested model
/// and where detections go (the outbox, then the output).
pub(crate) struct Session {
    pub analyzer: Analyzer,
    pub sink: EventSink<Box<dyn Write>>,
    /// The model's id and version.
    pub model: ModelRef,
    /// The same, with its bundle's hash (as model reports name it).
    pub version: warble_core::wire::ModelVersion,
    /// This run's boot number.
    pub boot: u64,
}

/// Loads the model of `settings` (verified, self-tested, the station's species codes
/// checked against its labels) and opens the outputs: `out`, or standard output.
pub(crate) fn prepare(settings: &Settings, out: Option<&Path>) -> anyhow::Result<Session> {
    let keys = TrustedKeys::read_files(&settings.trusted)?;
    let model = LoadedModel::open(&settings.bundle, &keys, &settings.engine)?;
    // A code the model lacks would do nothing (a privacy class that protects nothing).
    if let Some(s) = &settings.station {
        warble_agent::species::check(s, model.bundle().labels(), &model.describe())?;
    }
    let m = model.bundle().manifest();
    tracing::info!(
        "model {} {} ({} classes), signed by {}, self-test max |diff| {:.1e} in {}",
        m.model_id,
        m.version,
        m.num_classes,
        model.bundle().signed_by(),
        model.selftest_diff(),
        model.backend()
    );
    let model_ref = model.model_ref();
    let version = warble_agent::updates::version_of(model.bundle());
    let cfg = settings.analyze_config(&model);
    let analyzer = model.into_analyzer(cfg)?;
    let sink: Box<dyn Write> = match out {
        Some(p) => Box::new(BufWriter::new(
            File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    let data_dir = settings.data_dir.as_deref();
    let boot = data_dir.map_or(Ok(0), warble_agent::station::next_boot)?;
    let writer = Writer::new(sink, settings.format)?;
    // With a station file, every detection also waits in the station's outbox for
    // `warble-agent deliver` (or the live agent) to send it.
    let outbox = match (&settings.station, data_dir) {
        (Some(s), Some(dir)) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let mut outbox = warble_agent::outbox::Outbox::open(
                warble_agent::outbox::path_in(dir),
                s.outbox_quota_bytes,
            )?;
            // A live station closes what its last run reported open and never closed.
            if settings.first_reports {
                let closed = outbox.close_unfinished(boot)?;
                if closed > 0 {
                    tracing::info!(
                        "{closed} detection(s) first reported before the last stop, still open then, sent again as final"
                    );
                }
            }
            Some(outbox)
        }
        _ => None,
    };
    let sink = EventSink::new(
        Minter::new(&settings.station_id, boot, model_ref.clone()),
        outbox,
        writer,
    );
    Ok(Session {
        analyzer,
        sink,
        model: model_ref,
        version,
        boot,
    })
}

/// The inputs: audio files (directories walked), and the rate of the raw PCM when one
/// of them is standard input.
fn inputs(args: &AnalyzeArgs) -> anyhow::Result<(Vec<PathBuf>, Option<SampleRate>)> {
    let files = collect(&args.paths)?;
    let stdin_uses = files
        .iter()
        .filter(|f| f.as_path() == Path::new(STDIN))
        .count();
    if stdin_uses > 1 {
        bail!("`-` (standard input) can be read once");
    }
    let pcm_rate = match (stdin_uses, args.pcm_rate) {
        (1, None) => bail!("`-` reads raw PCM: give its sample rate with --pcm-rate"),
        (1, Some(hz)) => Some(
            SampleRate::new(hz)
                .with_context(|| format!("--pcm-rate {hz} is not a usable sample rate"))?,
        ),
        _ => None,
    };
    if files.is_empty() {
        bail!(
            "no audio files ({}) found in {}",
            AUDIO_EXTENSIONS.join(", "),
            args.paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok((files, pcm_rate))
}

/// What the files added up to.
#[derive(Default)]
struct Totals {
    audio_s: f64,
    inference: Duration,
    windows: u64,
    events: usize,
    non_finite: u64,
    failed: usize,
}

impl Totals {
    fn add(&mut self, r: &FileResult) {
        self.audio_s += r.audio_seconds;
        self.inference += r.inference;
        self.windows += r.stats.windows;
        self.non_finite += r.stats.non_finite_windows;
        self.events += r.events.len();
    }
}

/// Analyses one input: a decoded file, or raw PCM from standard input at `pcm_rate`.
fn analyze_input(
    analyzer: &mut Analyzer,
    args: &AnalyzeArgs,
    file: &Path,
    pcm_rate: Option<SampleRate>,
    on_event: impl FnMut(&SpeciesEvent),
    bar: &ProgressBar,
) -> Result<FileResult, AnalyzeError> {
    let Some(from) = pcm_rate.filter(|_| file == Path::new(STDIN)) else {
        return analyzer.analyze_file(file, on_event);
    };
    let format = match args.pcm_format {
        PcmFormatArg::S16le => warble_agent::pcm::PcmFormat::S16Le,
        PcmFormatArg::F32le => warble_agent::pcm::PcmFormat::F32Le,
    };
    let to = analyzer.sample_rate();
    let stdin = std::io::stdin().lock();
    let mut pcm = warble_agent::pcm::PcmReader::new(stdin, format, args.pcm_channels, from, to)?;
    let result = analyzer.analyze_source(|chunk| Ok(pcm.read_chunk(chunk)?), on_event);
    if pcm.trailing_bytes > 0 {
        bar.suspend(|| {
            tracing::warn!(
                "standard input: ignored {} trailing byte(s), not a whole frame",
                pcm.trailing_bytes
            )
        });
    }
    result
}

/// Says what the run did and cost, and how it scored against the ground truth.
fn say_summary(t: &Totals, files: usize, wall: f64, cpu: Option<f64>, truth: Option<&GroundTruth>) {
    let mut summary = format!(
        "{} file(s), {:.1} s of audio, {} windows, {} detections in {wall:.2} s: {:.0}× real time",
        files - t.failed,
        t.audio_s,
        t.windows,
        t.events,
        t.audio_s / wall.max(1e-9)
    );
    if let Some(cpu) = cpu.filter(|&c| c > 0.0) {
        summary += &format!(", {:.0} audio-s per CPU-s", t.audio_s / cpu);
    }
    summary += &format!(
        "; inference {:.1} ms per window",
        1e3 * t.inference.as_secs_f64() / t.windows.max(1) as f64
    );
    if let Some(rss) = peak_rss_bytes() {
        summary += &format!("; peak RSS {:.1} MB", rss as f64 / 1e6);
    }
    tracing::info!("{summary}");
    if t.non_finite > 0 {
        tracing::warn!(
            "{} window(s) dropped: the model produced NaN or infinity",
            t.non_finite
        );
    }
    if let Some(truth) = truth {
        tracing::info!("against the ground truth: {}", truth.summary());
    }
}

pub fn run(args: AnalyzeArgs, station: Option<warble_config::StationConfig>) -> anyhow::Result<()> {
    let settings = Settings::resolve(station, args.overrides(), args.batch)?;
    let Session {
        mut analyzer,
        mut sink,
        ..
    } = prepare(&settings, args.out.as_deref())?;
    let to_stdout = args.out.is_none();
    let mut truth = args.truth.as_deref().map(GroundTruth::read).transpose()?;
    let (files, pcm_rate) = inputs(&args)?;
    let labels = analyzer.labels().clone();
    let rate = analyzer.sample_rate().hz();
    let bar = if files.len() > 1 {
        ProgressBar::new(files.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} files {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let cpu_start = cpu_seconds();
    let mut totals = Totals::default();
    for file in &files {
        bar.set_message(file.display().to_string());
        let name = file.display().to_string();
        let timeline = match recorded_at(args.recorded_at.as_deref(), file) {
            Ok(t) => warble_agent::timeline::Timeline::starting_at(t, rate),
            Err(e) => {
                bar.suspend(|| tracing::warn!("skipped {name}: {e:#}"));
                totals.failed += 1;
                bar.inc(1);
                continue;
            }
        };
        let mut write_err = None;
        let on_event = |e: &SpeciesEvent| {
            let row = Row {
                file: &name,
                event: e,
                rate_hz: rate,
                clip: None,
            };
            // Committed to the outbox (if any) before the output sees it.
            if let Err(err) = sink.emit(&row, &labels, &timeline) {
                write_err.get_or_insert(err);
            }
            let seconds = |sample: u64| sample as f64 / f64::from(rate);
            let (start_s, end_s) = (seconds(e.start_sample), seconds(e.end_sample));
            let label = labels.get(e.class);
            let code = label.map(|l| l.code.to_string()).unwrap_or_default();
            let common = label.map(|l| l.common.as_str()).unwrap_or_default();
            let verdict = truth.as_mut().map(|t| t.score(&code, start_s, end_s));
            if to_stdout && verdict.is_none() {
                return; // the detections themselves are on standard output
            }
            let line = format!(
                "{start_s:>7.1}–{end_s:>6.1} s  {code:<8} {common:<24} {:.2}{}",
                e.confidence,
                match verdict {
                    Some(true) => "  ✓ in ground truth",
                    Some(false) => "  ✗ not in ground truth",
                    None => "",
                }
            );
            bar.suspend(|| {
                if to_stdout {
                    tracing::info!("{line}");
                } else {
                    println!("{line}");
                }
            });
        };
        match analyze_input(&mut analyzer, &args, file, pcm_rate, on_event, &bar) {
            Ok(r) => totals.add(&r),
            Err(e) => {
                bar.suspend(|| tracing::warn!("skipped {name}: {e}"));
                totals.failed += 1;
            }
        }
        if let Some(e) = write_err {
            return Err(e).context("writing detections");
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    // Reported after the summary: the detections are counted (and in the outbox) anyway.
    let finished = sink.finish();
    let cpu = cpu_seconds().zip(cpu_start).map(|(b, a)| b - a);
    let wall = started.elapsed().as_secs_f64();
    say_summary(&totals, files.len(), wall, cpu, truth.as_ref());
    finished?;
    if totals.failed > 0 {
        bail!(
            "{} of {} file(s) could not be analysed (see above)",
            totals.failed,
            files.len()
        );
    }
    Ok(())
}
