//! `warble-export`: keys, ONNX export with parity, signed bundles, verification.
#![allow(clippy::print_stdout)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use warble_core::bundle::{Bundle, InputSpec, Limits, OutputActivation, SecretKey, TrustedKeys};
use warble_core::wire::{StationId, TopicPrefix};
use warble_export::parity::ParityReport;
use warble_export::pipeline::{
    BundleOptions, ImportOptions, Progress, bundle_run, export_run, import_onnx,
};
use warble_export::{push, rollout};
use warble_infer::{EngineChoice, EngineConfig};
use warble_mqtt::BrokerArgs;

#[derive(Parser)]
#[command(
    version,
    about = "Export Warble models: ONNX, parity, signed bundles, keys"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum EngineArg {
    Auto,
    Ort,
    Tract,
}

impl From<EngineArg> for EngineChoice {
    fn from(e: EngineArg) -> Self {
        match e {
            EngineArg::Auto => Self::Auto,
            EngineArg::Ort => Self::Ort,
            EngineArg::Tract => Self::Tract,
        }
    }
}

/// `warble-export rollout` arguments.
#[derive(clap::Args)]
struct RolloutArgs {
    /// Bundle file to roll out.
    bundle: PathBuf,
    #[command(flatten)]
    broker: BrokerArgs,
    /// The fleet group.
    #[arg(long)]
    group: String,
    /// Fleet inventory (`id,group,…` CSV or TOML, as `warble-config render` reads it):
    /// the group's stations, rolled out in its order.
    #[arg(long)]
    inventory: PathBuf,
    /// The bundle the stations run now: an aborted wave is offered it again (forced).
    #[arg(long)]
    previous: PathBuf,
    /// Secret key that signs the offers.
    #[arg(long)]
    key: PathBuf,
    /// Further public keys the bundles may be signed by.
    #[arg(long = "trusted")]
    trusted: Vec<PathBuf>,
    /// Cumulative shares of the group per wave.
    #[arg(long, default_value = "5%,25%,100%")]
    waves: String,
    /// Stop when this share of the stations with an outcome failed...
    #[arg(long, default_value = "10%")]
    abort_failed: String,
    /// ...once at least this many have an outcome.
    #[arg(long, default_value_t = 3)]
    min_stations: usize,
    /// Probation on live audio each station runs it (e.g. 90s, 10m, 1h).
    #[arg(long, default_value = "10m")]
    probation: String,
    /// How long a wave's stations have to report an outcome (default: the probation plus
    /// 5 minutes); a station silent that long counts as failed.
    #[arg(long)]
    wave_timeout: Option<String>,
    /// Where the state is saved (default: rollout-<group>.json here).
    #[arg(long)]
    state: Option<PathBuf>,
    /// Offer it even where it is not newer than what a station installed.
    #[arg(long)]
    force: bool,
    /// Topic prefix of the stations.
    #[arg(long, default_value = "warble")]
    prefix: String,
    /// MQTT client id.
    #[arg(long, default_value = "warble-operator")]
    client_id: String,
}

#[derive(Subcommand)]
enum Command {
    /// Create an ed25519 signing key: NAME.key (mode 0600, keep it secret) and NAME.pub
    /// (give it to the stations).
    Keygen {
        /// Path prefix of the two files, e.g. keys/field-team.
        out: PathBuf,
        /// Comment stored in the public key (who owns it).
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Write a trained run's ONNX graph after proving it equal to burn (max |logit
    /// difference| <= 1e-4 in ONNX Runtime and tract); prints the parity figures.
    Onnx {
        /// Run directory written by `warble-train fit`.
        run: PathBuf,
        /// Output .onnx file.
        #[arg(long)]
        out: PathBuf,
        /// Use the last epoch's weights instead of the best.
        #[arg(long)]
        last: bool,
        /// Validation clips used for the parity check (at most).
        #[arg(long, default_value_t = 64)]
        max_valid: usize,
        /// ONNX Runtime library.
        #[arg(long)]
        onnxruntime: Option<PathBuf>,
    },
    /// Export a trained run as a signed bundle (.warble), refusing it if the ONNX graph
    /// disagrees with burn by more than 1e-4 in ONNX Runtime or tract.
    Bundle {
        /// Run directory written by `warble-train fit`.
        run: PathBuf,
        /// Output bundle.
        #[arg(long)]
        out: PathBuf,
        /// Secret key file from `keygen`.
        #[arg(long)]
        key: PathBuf,
        /// Model id (default: the run directory's name).
        #[arg(long)]
        model_id: Option<String>,
        /// Semantic version of this model.
        #[arg(long, default_value = "0.1.0")]
        version: String,
        /// Use the last epoch's weights instead of the best.
        #[arg(long)]
        last: bool,
        /// Threshold for classes without a calibrated one.
        #[arg(long, default_value_t = 0.5)]
        default_threshold: f32,
        /// Calibrate each class's threshold to this precision on validation data.
        #[arg(long, default_value_t = 0.9)]
        target_precision: f64,
        /// Validation clips used for parity and calibration (at most).
        #[arg(long, default_value_t = 256)]
        max_valid: usize,
        /// ONNX Runtime library (default: ORT_DYLIB_PATH or the installed one).
        #[arg(long)]
        onnxruntime: Option<PathBuf>,
    },
    /// Wrap an external ONNX classifier that takes raw audio (e.g. BirdNET or Perch
    /// converted to ONNX by you) in a signed bundle with `input.kind = waveform`.
    Import {
        /// The ONNX model: input `[batch, samples]`, output `[batch, classes]`.
        #[arg(long)]
        onnx: PathBuf,
        /// Labels CSV (`index,code,scientific,common`), one row per output.
        #[arg(long)]
        labels: PathBuf,
        /// Input kind (only `waveform` is imported).
        #[arg(long, default_value = "waveform")]
        input: String,
        /// Sample rate the model expects, Hz.
        #[arg(long)]
        sample_rate: u32,
        /// Window length, s.
        #[arg(long)]
        window: f64,
        /// The model outputs logits (`sigmoid`, the agent applies one) or probabilities
        /// (`none`).
        #[arg(long, default_value = "sigmoid")]
        activation: String,
        /// Decision threshold for every class.
        #[arg(long, default_value_t = 0.5)]
        threshold: f32,
        /// Self-test tolerance.
        #[arg(long, default_value_t = 1e-3)]
        tolerance: f32,
        /// Output bundle.
        #[arg(long)]
        out: PathBuf,
        /// Secret key file.
        #[arg(long)]
        key: PathBuf,
        /// Model id.
        #[arg(long)]
        model_id: String,
        /// Semantic version.
        #[arg(long, default_value = "1.0.0")]
        version: String,
        /// ONNX Runtime library.
        #[arg(long)]
        onnxruntime: Option<PathBuf>,
    },
    /// Verify a bundle: signature by a trusted key, hashes, archive safety, consistency,
    /// and the self-test in an inference engine.
    Verify {
        /// Bundle file.
        bundle: PathBuf,
        /// Trusted public key file(s).
        #[arg(long = "trusted", required = true)]
        trusted: Vec<PathBuf>,
        /// Engine for the self-test.
        #[arg(long, value_enum, default_value = "auto")]
        engine: EngineArg,
        /// ONNX Runtime library.
        #[arg(long)]
        onnxruntime: Option<PathBuf>,
    },
    /// Offer a bundle to a station or a fleet group over MQTT: published retained on
    /// `<prefix>/<station>/bundle` or `<prefix>/fleet/<group>/bundle` (a station's own
    /// topic beats its group's), so stations offline now take it when they reconnect. The
    /// offer is signed with --key; the bundle is verified before it is sent.
    Push {
        /// Bundle file (`--clear` without one).
        #[arg(required_unless_present = "clear")]
        bundle: Option<PathBuf>,
        #[command(flatten)]
        broker: BrokerArgs,
        /// The station to offer it to.
        #[arg(long, required_unless_present = "group", conflicts_with = "group")]
        station: Option<String>,
        /// The fleet group to offer it to.
        #[arg(long)]
        group: Option<String>,
        /// Secret key that signs the offer (`keygen`); its public half must be among the
        /// stations' trusted keys.
        #[arg(long, required_unless_present = "clear")]
        key: Option<PathBuf>,
        /// Further public keys the bundle may be signed by.
        #[arg(long = "trusted")]
        trusted: Vec<PathBuf>,
        /// Install even if it is not newer than what a station runs (a rollback by hand).
        #[arg(long)]
        force: bool,
        /// Probation on live audio the stations run it (e.g. 90s, 10m; default: each
        /// station's model.probation_s).
        #[arg(long)]
        probation: Option<String>,
        /// Remove the retained offer instead (stations keep what they run).
        #[arg(long, conflicts_with_all = ["bundle", "force"])]
        clear: bool,
        /// Topic prefix of the stations.
        #[arg(long, default_value = "warble")]
        prefix: String,
        /// MQTT client id.
        #[arg(long, default_value = "warble-operator")]
        client_id: String,
    },
    /// Roll a bundle out to a fleet group in waves: each wave's stations are offered it
    /// on their own topics and watched until each reports it committed, rejected or
    /// rolled back; at the abort threshold the wave is offered the previous bundle again
    /// and later waves nothing. The state is saved after every change: run the same
    /// command again to resume.
    Rollout(RolloutArgs),
    /// Print a verified bundle's manifest for people: model, input, thresholds, metrics.
    Inspect {
        /// Bundle file.
        bundle: PathBuf,
        /// Trusted public key file(s).
        #[arg(long = "trusted", required = true)]
        trusted: Vec<PathBuf>,
        /// Print the manifest as JSON instead.
        #[arg(long)]
        json: bool,
    },
}

/// indicatif progress for the library's steps.
struct Bars(Mutex<Option<ProgressBar>>);

impl Progress for Bars {
    fn start(&self, step: &str, total: u64) {
        let bar = ProgressBar::new(total).with_message(step.to_owned());
        bar.set_style(
            ProgressStyle::with_template("{msg:>24} [{bar:40}] {pos}/{len} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(bar);
        }
    }
    fn tick(&self) {
        if let Ok(slot) = self.0.lock()
            && let Some(bar) = slot.as_ref()
        {
            bar.inc(1);
        }
    }
    fn finish(&self) {
        if let Ok(mut slot) = self.0.lock()
            && let Some(bar) = slot.take()
        {
            bar.finish();
        }
    }
}

fn write_new(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {} (it must not exist yet)", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

fn keygen(out: &Path, comment: &str) -> anyhow::Result<()> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("OS random source: {e}"))?;
    let key = SecretKey::from_seed(seed, comment);
    let secret = out.with_extension("key");
    let public = out.with_extension("pub");
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if public.exists() {
        bail!("{} already exists; not overwriting a key", public.display());
    }
    write_new(&secret, &key.to_text(), 0o600)?;
    write_new(&public, &key.public().to_text(), 0o644)?;
    println!("key id   {}", key.public().id());
    println!(
        "secret   {}  (mode 0600: never copy it into a bundle or a repository)",
        secret.display()
    );
    println!(
        "public   {}  (install on stations as a trusted key)",
        public.display()
    );
    Ok(())
}

fn open_verified(bundle: &Path, trusted: &[PathBuf]) -> anyhow::Result<Bundle> {
    let keys = TrustedKeys::read_files(trusted)?;
    Bundle::open(bundle, &keys, &Limits::default())
        .with_context(|| format!("{} failed verification", bundle.display()))
}

fn verify(
    bundle: &Path,
    trusted: &[PathBuf],
    engine: EngineArg,
    onnxruntime: Option<PathBuf>,
) -> anyhow::Result<()> {
    let b = open_verified(bundle, trusted)?;
    let config = EngineConfig {
        choice: engine.into(),
        ort_library: onnxruntime,
        threads: 1,
    };
    let (engine, diff) = warble_infer::load_bundle(&b, &config)
        .with_context(|| format!("{}: self-test", bundle.display()))?;
    let m = b.manifest();
    println!(
        "OK {} {} ({} classes)",
        m.model_id, m.version, m.num_classes
    );
    println!("  signed by     {}", b.signed_by());
    println!("  sha256        {}", b.sha256());
    println!(
        "  self-test     max |diff| {diff:.2e} <= {:.0e} in {}",
        m.selftest_tolerance,
        engine.backend()
    );
    Ok(())
}

/// The signed offer of `bundle`, said before it is sent.
fn prepare_offer(
    bundle: &Path,
    key: &Path,
    trusted: &[PathBuf],
    force: bool,
    probation: Option<&str>,
) -> anyhow::Result<Vec<u8>> {
    let key = SecretKey::read(key)?;
    let trusted = TrustedKeys::read_files(trusted)?;
    let probation_s = probation
        .map(|p| rollout::parse_duration(p).map(|d| d.as_secs().max(1)))
        .transpose()
        .map_err(|e| anyhow::anyhow!("--probation: {e}"))?;
    let (verified, message) = push::offer_message(bundle, &key, &trusted, force, probation_s)?;
    let m = verified.manifest();
    println!(
        "offering {} {} ({} classes, {:.1} MB, sha256 {}…){}, offer signed by {}",
        m.model_id,
        m.version,
        m.num_classes,
        message.len() as f64 / 1e6,
        &verified.sha256()[..12],
        if force { ", forced" } else { "" },
        key.public().id()
    );
    Ok(message)
}

/// Publishes `offer` retained on `topic` (or clears it), waiting for the broker's
/// acknowledgement.
fn push_offer(
    broker: &BrokerArgs,
    client_id: &str,
    topic: &str,
    offer: Option<Vec<u8>>,
) -> anyhow::Result<()> {
    let endpoint = broker.endpoint("operator")?;
    let clearing = offer.is_none();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(push::publish_retained(
        &endpoint,
        client_id,
        topic,
        offer.unwrap_or_default(),
        std::time::Duration::from_secs(60),
    ))?;
    if clearing {
        println!("cleared the retained offer on {topic}");
    } else {
        println!("published on {topic} (retained): stations take it when they next connect");
    }
    Ok(())
}

fn inspect(bundle: &Path, trusted: &[PathBuf], json: bool) -> anyhow::Result<()> {
    let b = open_verified(bundle, trusted)?;
    let m = b.manifest();
    if json {
        println!("{}", serde_json::to_string_pretty(m)?);
        return Ok(());
    }
    println!("model        {} {}", m.model_id, m.version);
    println!("created      {}", m.created);
    println!("signed by    {}", b.signed_by());
    match &m.input {
        InputSpec::Logmel {
            frontend,
            window_samples,
        } => println!(
            "input        log-mel {:?}: {} Hz, {} mels, window {:.2} s ({window_samples} samples), shape {:?}",
            frontend.preset,
            frontend.sample_rate_hz,
            frontend.n_mels,
            *window_samples as f64 / f64::from(frontend.sample_rate_hz),
            m.input_shape
        ),
        InputSpec::Waveform {
            sample_rate_hz,
            window_samples,
        } => println!(
            "input        waveform {sample_rate_hz} Hz, {window_samples} samples, shape {:?}",
            m.input_shape
        ),
    }
    println!(
        "outputs      {} classes ({:?})",
        m.num_classes, m.output_activation
    );
    if let Some(arch) = m.recipe.get("architecture") {
        println!("architecture {arch}");
    }
    println!(
        "thresholds   default {:.3}; {}",
        m.thresholds.default, m.thresholds.method
    );
    println!("  {:<10} {:<28} {:>9}", "code", "common name", "threshold");
    for (i, label) in b.labels().iter().enumerate() {
        println!(
            "  {:<10} {:<28} {:>9.3}",
            label.code.as_str(),
            label.common,
            b.threshold(i)
        );
    }
    if let Some(v) = m.metrics.get("validation") {
        let get = |k: &str| {
            v.get(k)
                .and_then(serde_json::Value::as_f64)
                .unwrap_or(f64::NAN)
        };
        println!(
            "validation   cmAP {:.3}  AUROC {:.3}  top-1 {:.3}",
            get("cmap"),
            get("auroc"),
            get("top1")
        );
    }
    if let Some(engines) = m
        .metrics
        .pointer("/parity/engines")
        .and_then(|e| e.as_array())
    {
        for e in engines {
            println!(
                "parity       {}: max |logit diff| {}",
                e["engine"].as_str().unwrap_or("?"),
                e["max_abs_diff"]
            );
        }
    }
    Ok(())
}

fn print_parity(parity: &ParityReport) {
    for e in &parity.engines {
        println!(
            "  parity {:<12} max |logit diff| {:.2e} (mean {:.2e}) over {} inputs",
            e.engine, e.max_abs_diff, e.mean_abs_diff, parity.inputs
        );
    }
}

fn main() -> std::process::ExitCode {
    // What the libraries say (a fallback to tract, a slow engine) reaches standard error;
    // `RUST_LOG` picks more or less.
    warble_config::logging::LogSettings::default().install();
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("warble-export: {err:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Keygen { out, comment } => keygen(&out, &comment),
        Command::Bundle {
            run,
            out,
            key,
            model_id,
            version,
            last,
            default_threshold,
            target_precision,
            max_valid,
            onnxruntime,
        } => {
            let opts = BundleOptions {
                run,
                last,
                out,
                key,
                model_id,
                version,
                default_threshold,
                target_precision,
                max_valid,
                random_batches: 4,
                engines: vec![EngineChoice::Ort, EngineChoice::Tract],
                ort_library: onnxruntime,
            };
            let report = bundle_run(&opts, &Bars(Mutex::new(None)))?;
            println!(
                "wrote {} ({} bytes): {} [{}]",
                report.path.display(),
                report.bytes,
                report.model,
                report.architecture
            );
            print_parity(&report.parity);
            println!(
                "  thresholds: {} of {} classes calibrated on {} validation clips",
                report.calibrated, report.manifest.num_classes, report.valid_clips
            );
            Ok(())
        }
        Command::Onnx {
            run,
            out,
            last,
            max_valid,
            onnxruntime,
        } => {
            let exported = export_run(
                &run,
                last,
                max_valid,
                4,
                &[EngineChoice::Ort, EngineChoice::Tract],
                onnxruntime.as_deref(),
                &Bars(Mutex::new(None)),
            )?;
            std::fs::write(&out, &exported.onnx)
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "wrote {} ({} bytes, opset {}): {} with {} classes",
                out.display(),
                exported.onnx.len(),
                warble_export::onnx::OPSET,
                exported.arch.name(),
                exported.arch.num_classes()
            );
            print_parity(&exported.parity);
            Ok(())
        }
        Command::Import {
            onnx,
            labels,
            input,
            sample_rate,
            window,
            activation,
            threshold,
            tolerance,
            out,
            key,
            model_id,
            version,
            onnxruntime,
        } => {
            if input != "waveform" {
                bail!(
                    "--input {input}: only `waveform` models are imported (Warble's own log-mel models are exported with `bundle`)"
                );
            }
            let activation = match activation.as_str() {
                "sigmoid" => OutputActivation::Sigmoid,
                "none" => OutputActivation::None,
                other => bail!("--activation {other}: expected `sigmoid` or `none`"),
            };
            let report = import_onnx(&ImportOptions {
                onnx,
                labels,
                sample_rate_hz: sample_rate,
                window_s: window,
                activation,
                threshold,
                tolerance,
                out,
                key,
                model_id,
                version,
                ort_library: onnxruntime,
            })?;
            println!(
                "wrote {} ({} bytes): {} classes, waveform input",
                report.path.display(),
                report.bytes,
                report.classes
            );
            match report.engine_diff {
                Some(d) => {
                    println!("  ONNX Runtime vs tract on the self-test input: max |diff| {d:.2e}")
                }
                None => println!("  (only one engine could run the model; no cross-check)"),
            }
            Ok(())
        }
        Command::Verify {
            bundle,
            trusted,
            engine,
            onnxruntime,
        } => verify(&bundle, &trusted, engine, onnxruntime),
        Command::Inspect {
            bundle,
            trusted,
            json,
        } => inspect(&bundle, &trusted, json),
        Command::Push {
            bundle,
            broker,
            station,
            group,
            key,
            trusted,
            force,
            probation,
            clear,
            prefix,
            client_id,
        } => {
            let prefix = TopicPrefix::new(&prefix).map_err(|e| anyhow::anyhow!("--prefix: {e}"))?;
            let target = match (station, group) {
                (Some(s), _) => push::Target::Station(
                    StationId::new(&s).map_err(|e| anyhow::anyhow!("--station: {e}"))?,
                ),
                (None, Some(g)) => push::Target::Group(g),
                (None, None) => anyhow::bail!("--station or --group is required"),
            };
            let offer = match (bundle, key) {
                (Some(bundle), Some(key)) if !clear => Some(prepare_offer(
                    &bundle,
                    &key,
                    &trusted,
                    force,
                    probation.as_deref(),
                )?),
                _ => None,
            };
            push_offer(&broker, &client_id, &target.topic(&prefix)?, offer)
        }
        Command::Rollout(args) => rollout_cmd(args),
    }
}

/// Shows a rollout as it goes: a bar per wave, a line per station outcome.
#[derive(Default)]
struct RolloutBars {
    bar: Option<indicatif::ProgressBar>,
}

impl rollout::Progress for RolloutBars {
    fn wave(&mut self, wave: usize, waves: usize, stations: usize) {
        println!("wave {}/{waves}: {stations} station(s)", wave + 1);
        let bar = indicatif::ProgressBar::new(stations as u64);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("  [{bar:30}] {pos}/{len} finished {elapsed}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        self.bar = Some(bar);
    }

    fn station(&mut self, id: &str, state: &rollout::StationState) {
        use rollout::StationState as S;
        let line = match state {
            S::Committed => format!("  {id}: committed"),
            S::Failed { reason } => format!("  {id}: FAILED ({reason})"),
            S::Restoring { .. } => format!("  {id}: offered the previous bundle again"),
            S::Restored { .. } => format!("  {id}: runs the previous bundle again"),
            S::Waiting | S::Offered { .. } => return,
        };
        match &self.bar {
            Some(bar) => {
                if matches!(state, S::Committed | S::Failed { .. }) {
                    bar.inc(1);
                }
                bar.suspend(|| println!("{line}"));
            }
            None => println!("{line}"),
        }
    }

    fn wave_done(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// The rollout's table: one row per station.
fn rollout_summary(r: &rollout::Rollout) {
    use rollout::StationState as S;
    println!("\n{:<24} {:>4}  outcome", "station", "wave");
    for (w, wave) in r.waves.iter().enumerate() {
        for id in wave {
            let outcome = match r.stations.get(id) {
                Some(S::Committed) => "committed".to_owned(),
                Some(S::Failed { reason }) => format!("failed: {reason}"),
                Some(S::Restoring { .. }) => {
                    "offered the previous bundle again (no report yet)".to_owned()
                }
                Some(S::Restored { .. }) => "restored to the previous bundle".to_owned(),
                Some(S::Offered { .. }) => "offered, no outcome yet".to_owned(),
                Some(S::Waiting) | None => "not offered".to_owned(),
            };
            println!("{id:<24} {:>4}  {outcome}", w + 1);
        }
    }
}

/// `warble-export rollout`.
#[allow(clippy::too_many_arguments, reason = "the command's flags")]
fn rollout_cmd(a: RolloutArgs) -> anyhow::Result<()> {
    let prefix = TopicPrefix::new(&a.prefix).map_err(|e| anyhow::anyhow!("--prefix: {e}"))?;
    let shares = rollout::parse_waves(&a.waves).map_err(anyhow::Error::msg)?;
    let failed_share = rollout::parse_percent(&a.abort_failed)
        .map_err(|e| anyhow::anyhow!("--abort-failed: {e}"))?;
    let probation =
        rollout::parse_duration(&a.probation).map_err(|e| anyhow::anyhow!("--probation: {e}"))?;
    let wave_timeout = match &a.wave_timeout {
        Some(t) => {
            rollout::parse_duration(t).map_err(|e| anyhow::anyhow!("--wave-timeout: {e}"))?
        }
        None => probation + std::time::Duration::from_secs(300),
    };
    let inventory =
        warble_config::fleet::read_inventory(&a.inventory).map_err(|p| anyhow::anyhow!("{p}"))?;
    let stations: Vec<String> = inventory
        .into_iter()
        .filter(|e| e.group == a.group)
        .map(|e| e.id)
        .collect();
    if stations.is_empty() {
        anyhow::bail!(
            "{}: no station in group `{}`",
            a.inventory.display(),
            a.group
        );
    }
    let key = SecretKey::read(&a.key)?;
    let trusted = TrustedKeys::read_files(&a.trusted)?;
    let probation_s = Some(probation.as_secs().max(1));
    let (bundle, offer) = push::offer_message(&a.bundle, &key, &trusted, a.force, probation_s)?;
    // Checked now, signed again when it is sent.
    let (previous, _) = push::offer_message(&a.previous, &key, &trusted, true, probation_s)?;
    let previous_offer = {
        let (path, key_path, trusted) = (a.previous.clone(), a.key.clone(), trusted.clone());
        Box::new(move || {
            let key = SecretKey::read(&key_path).map_err(|e| push::PushError::Io {
                path: key_path.display().to_string(),
                reason: e.to_string(),
            })?;
            push::offer_message(&path, &key, &trusted, true, probation_s).map(|(_, offer)| offer)
        })
    };
    let m = bundle.manifest();
    let name = format!("{} {}", m.model_id, m.version);
    let state_path = a
        .state
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("rollout-{}.json", a.group)));
    let mut state = match rollout::Rollout::read(&state_path)? {
        Some(saved) if saved.bundle_sha256 == bundle.sha256() && saved.group == a.group => {
            println!(
                "resuming the rollout of {name} saved in {}",
                state_path.display()
            );
            saved
        }
        Some(saved) => anyhow::bail!(
            "{} holds a rollout of {} to group `{}`: finish it, or remove the file to start anew",
            state_path.display(),
            saved.bundle,
            saved.group
        ),
        None => rollout::Rollout::new(
            bundle.sha256().to_owned(),
            name.clone(),
            previous.sha256().to_owned(),
            a.group.clone(),
            rollout::plan_waves(&stations, &shares),
        ),
    };
    println!(
        "rolling {name} out to {} station(s) of group `{}` in {} wave(s); probation {} s; stop at {:.0} % failed once {} have an outcome; state in {}",
        stations.len(),
        a.group,
        state.waves.len(),
        probation.as_secs(),
        100.0 * failed_share,
        a.min_stations,
        state_path.display()
    );
    let cfg = rollout::RolloutConfig {
        endpoint: a.broker.endpoint("operator")?,
        client_id: a.client_id.clone(),
        prefix,
        offer,
        previous_offer,
        abort: rollout::AbortRule {
            failed_share,
            min_stations: a.min_stations,
        },
        wave_timeout,
        state_path,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut bars = RolloutBars::default();
    let ran = runtime.block_on(rollout::run(&cfg, &mut state, &mut bars));
    rollout_summary(&state);
    ran?;
    match &state.status {
        rollout::Status::Done => {
            println!("\n{name} is committed on every station of `{}`", a.group);
            Ok(())
        }
        rollout::Status::Aborted { wave, reason } => anyhow::bail!(
            "rollout stopped in wave {wave}: {reason}; that wave was offered {} again, later waves nothing",
            previous.manifest().version
        ),
        rollout::Status::Running => {
            anyhow::bail!("the rollout did not finish: run again to resume")
        }
    }
}
