//! The recorder stage in-process, driven from a recording instead of a microphone: what
//! it hears is what batch analysis finds, committed to the outbox before anything else;
//! a stop request mid-call still closes and commits the call; `--record` keeps everything
//! captured while the schedule is not listening.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use warble_agent::analyze::{AnalyzeConfig, Analyzer};
use warble_agent::events::EventSink;
use warble_agent::health::Health;
use warble_agent::outbox::Outbox;
use warble_agent::output::{Format, Minter, Writer};
use warble_agent::recorder::{AudioSource, FileSource, Limits, Recorder};
use warble_core::event::ModelRef;

fn analyzer() -> Analyzer {
    common::demo_analyzer(AnalyzeConfig {
        batch: 1,
        ..AnalyzeConfig::default()
    })
}

fn sink(outbox: Outbox) -> EventSink<Vec<u8>> {
    let model = ModelRef {
        id: "warble-demo".into(),
        version: "0.1.0".into(),
    };
    EventSink::new(
        Minter::new("st-1", 7, model),
        Some(outbox),
        Writer::new(Vec::new(), Format::Jsonl).unwrap(),
    )
}

fn demo() -> PathBuf {
    common::repo_file("demo/soundscape.flac")
}

#[test]
fn a_recording_through_the_recorder_gives_the_batch_detections_in_the_outbox() {
    let mut batch = analyzer();
    let reference = batch.analyze_file(&demo(), |_| {}).unwrap().events;
    assert!(reference.len() >= 5, "{reference:?}");

    let dir = tempfile::tempdir().unwrap();
    let outbox_path = dir.path().join("outbox.sqlite");
    let analyzer = analyzer();
    let rate = analyzer.sample_rate();
    let health = Arc::new(Health::default());
    let recorder = Recorder::new(
        analyzer,
        sink(Outbox::open(&outbox_path, 1 << 24).unwrap()),
        health.clone(),
        rate,
    );
    // A sound card's few hundred samples at a time.
    let mut source = FileSource::open(&demo(), rate, 441).unwrap();
    let finished = recorder.run(&mut source, &CancellationToken::new());
    finished.result.unwrap();
    assert!(source.error().is_none());
    let report = finished.report;
    assert_eq!(report.sink.events, reference.len() as u64);
    assert_eq!(
        health.detections.load(std::sync::atomic::Ordering::Relaxed),
        reference.len() as u64
    );
    assert!(report.windows > 0 && report.latency.ms(0.5) > 0.0);

    let stored = Outbox::open(&outbox_path, 1 << 24)
        .unwrap()
        .pending(10_000)
        .unwrap();
    assert_eq!(stored.len(), reference.len(), "every detection committed");
    let labels = batch.labels();
    for (p, e) in stored.iter().zip(&reference) {
        let label = labels.get(e.class).unwrap();
        assert_eq!(p.event.code, label.code);
        assert!((p.event.confidence - e.confidence).abs() < 1e-6);
        assert_eq!(p.event.start_sample, e.start_sample);
        assert_eq!(p.event.id, format!("st-1:7:{}", p.event.seq));
    }
}

/// A source that asks the recorder to stop once it has handed out `after` samples.
struct StopsAfter {
    inner: FileSource,
    handed: u64,
    after: u64,
    cancel: CancellationToken,
}

impl AudioSource for StopsAfter {
    fn read(&mut self, out: &mut Vec<f32>) -> usize {
        let n = self.inner.read(out);
        self.handed += n as u64;
        if self.handed >= self.after {
            self.cancel.cancel();
        }
        n
    }
    fn ended(&self) -> bool {
        self.inner.ended()
    }
}

#[test]
fn a_stop_request_closes_and_commits_what_was_heard() {
    let mut batch = analyzer();
    let rate = batch.sample_rate();
    let reference = batch.analyze_file(&demo(), |_| {}).unwrap().events;
    // Stop in the middle of the second call: it is closed at the stop, not lost.
    let second = &reference[1];
    let after = (second.start_sample + second.end_sample) / 2;

    let dir = tempfile::tempdir().unwrap();
    let outbox_path = dir.path().join("outbox.sqlite");
    let recorder = Recorder::new(
        analyzer(),
        sink(Outbox::open(&outbox_path, 1 << 24).unwrap()),
        Arc::new(Health::default()),
        rate,
    );
    let cancel = CancellationToken::new();
    let mut source = StopsAfter {
        inner: FileSource::open(&demo(), rate, 441).unwrap(),
        handed: 0,
        after,
        cancel: cancel.clone(),
    };
    let finished = recorder.run(&mut source, &cancel);
    finished.result.unwrap();
    assert!(!source.ended(), "stopped before the end of the file");
    assert!(finished.report.captured <= after + 441);
    let stored = Outbox::open(&outbox_path, 1 << 24)
        .unwrap()
        .pending(10_000)
        .unwrap();
    let before_stop = reference.iter().filter(|e| e.start_sample < after).count();
    assert!(before_stop >= 2);
    assert_eq!(
        stored.len(),
        before_stop,
        "every call begun before the stop is committed"
    );
}

#[test]
fn the_recording_keeps_everything_captured_while_the_schedule_is_not_listening() {
    let dir = tempfile::tempdir().unwrap();
    let analyzer = analyzer();
    let rate = analyzer.sample_rate();
    let wav = dir.path().join("check.wav");
    let recorder = Recorder::new(
        analyzer,
        sink(Outbox::open(dir.path().join("outbox.sqlite"), 1 << 24).unwrap()),
        Arc::new(Health::default()),
        rate,
    )
    .with_schedule(Box::new(|_| false))
    .with_recording(Some(wav.clone()))
    .with_limits(Limits {
        duration: None,
        max_samples: Some(3 * u64::from(rate.hz())),
    });
    let mut source = FileSource::open(&demo(), rate, 1000).unwrap();
    let finished = recorder.run(&mut source, &CancellationToken::new());
    finished.result.unwrap();
    assert_eq!(finished.report.sink.events, 0, "nothing analysed");
    assert_eq!(finished.report.audio_seconds, 0.0);
    let samples = hound::WavReader::open(&wav).unwrap().len();
    assert_eq!(u64::from(samples), 3 * u64::from(rate.hz()), "all captured");
}

/// A file source that hands a model switch to the recorder once `at` samples were read,
/// and reads at about twenty times real time (so the switch lands mid-file).
struct SwitchingSource {
    inner: FileSource,
    read: usize,
    at: usize,
    /// Sleep per read.
    pace: std::time::Duration,
    /// After sending the switch, no audio for this long: the recorder, which looks for a
    /// switch every second, takes it exactly at `at` (no call straddles the boundary).
    stall: Option<std::time::Duration>,
    stalled_until: Option<std::time::Instant>,
    switch: Option<(
        std::sync::mpsc::Sender<warble_agent::recorder::ModelSwitch>,
        warble_agent::recorder::ModelSwitch,
    )>,
}

impl AudioSource for SwitchingSource {
    fn read(&mut self, out: &mut Vec<f32>) -> usize {
        if self
            .stalled_until
            .is_some_and(|t| std::time::Instant::now() < t)
        {
            return 0;
        }
        std::thread::sleep(self.pace);
        let n = self.inner.read(out);
        self.read += n;
        if self.read >= self.at
            && let Some((tx, switch)) = self.switch.take()
        {
            tx.send(switch).unwrap();
            self.stalled_until = self.stall.map(|d| std::time::Instant::now() + d);
        }
        n
    }

    fn ended(&self) -> bool {
        self.inner.ended()
    }
}

#[test]
fn a_model_switch_mid_stream_changes_the_events_model_at_one_boundary_without_a_seq_hole() {
    let switch = demo_020(
        AnalyzeConfig {
            batch: 1,
            ..AnalyzeConfig::default()
        },
        None,
    );

    let dir = tempfile::tempdir().unwrap();
    let outbox_path = dir.path().join("outbox.sqlite");
    let analyzer = analyzer();
    let rate = analyzer.sample_rate();
    let (tx, rx) = std::sync::mpsc::channel();
    let recorder = Recorder::new(
        analyzer,
        sink(Outbox::open(&outbox_path, 1 << 24).unwrap()),
        Arc::new(Health::default()),
        rate,
    )
    .with_model_switches(rx);
    let inner = FileSource::open(&demo(), rate, 441).unwrap();
    let mut source = SwitchingSource {
        inner,
        read: 0,
        at: 20 * 32_000,
        pace: std::time::Duration::from_micros(700),
        stall: None,
        stalled_until: None,
        switch: Some((tx, switch)),
    };
    recorder
        .run(&mut source, &CancellationToken::new())
        .result
        .unwrap();
    let stored = stored_without_a_hole(&outbox_path);
    let versions: Vec<&str> = stored.iter().map(|e| e.model.version.as_str()).collect();
    let first_new = versions
        .iter()
        .position(|v| *v == "0.2.0")
        .expect("new-model events");
    assert!(
        first_new > 0,
        "old-model events before the switch: {versions:?}"
    );
    assert!(
        versions[first_new..].iter().all(|v| *v == "0.2.0"),
        "one boundary: {versions:?}"
    );
    // The old model heard up to the switch, the new one from there on.
    let last_old = stored[..first_new].iter().map(|e| e.start).max().unwrap();
    let first_new_start = stored[first_new..].iter().map(|e| e.start).min().unwrap();
    assert!(
        last_old <= first_new_start,
        "{last_old} > {first_new_start}"
    );
}

/// The demo model re-signed as 0.2.0, analysing with `cfg`, to switch to.
fn demo_020(
    cfg: AnalyzeConfig,
    trial: Option<warble_agent::probation::Trial>,
) -> warble_agent::recorder::ModelSwitch {
    use warble_core::bundle::{Bundle, Limits, SecretKey};
    let key = SecretKey::from_seed([9; 32], "operator");
    let bytes = warble_tests::demo::resigned("0.2.0", &key, |_, _| {});
    let trusted = [key.public().clone()].into_iter().collect();
    let newer = Bundle::from_bytes(&bytes, &trusted, &Limits::default()).unwrap();
    let engine = warble_infer::EngineConfig {
        choice: warble_infer::EngineChoice::Tract,
        ort_library: None,
        threads: 1,
    };
    let next = warble_agent::model::LoadedModel::load(newer, "0.2.0", &engine).unwrap();
    warble_agent::recorder::ModelSwitch {
        model: next.model_ref(),
        analyzer: next.into_analyzer(cfg).unwrap(),
        trial,
    }
}

/// One-second hops: enough windows in a short probation to compare detection rates.
fn hop_1s() -> AnalyzeConfig {
    AnalyzeConfig {
        batch: 1,
        hop_samples: Some(32_000),
        ..AnalyzeConfig::default()
    }
}

/// The demo recording through a recorder on a 1-s hop that switches to `switch` after
/// 21 s of audio: the stored events in seq order and the probation's verdict.
fn through_a_probation(
    switch: impl FnOnce(warble_agent::probation::Trial) -> warble_agent::recorder::ModelSwitch,
) -> (
    Vec<warble_core::event::Detection>,
    warble_agent::probation::Verdict,
) {
    let (verdicts, mut verdict) = tokio::sync::mpsc::unbounded_channel();
    let trial = warble_agent::probation::Trial {
        length: std::time::Duration::from_secs(15),
        verdicts,
    };
    let dir = tempfile::tempdir().unwrap();
    let outbox_path = dir.path().join("outbox.sqlite");
    let analyzer = common::demo_analyzer(hop_1s());
    let rate = analyzer.sample_rate();
    let (tx, rx) = std::sync::mpsc::channel();
    let health = Arc::new(Health::default());
    let recorder = Recorder::new(
        analyzer,
        sink(Outbox::open(&outbox_path, 1 << 24).unwrap()),
        health.clone(),
        rate,
    )
    .with_model_switches(rx);
    // The switch at 21 s exactly, between two calls of the recording.
    let mut source = SwitchingSource {
        inner: FileSource::open(&demo(), rate, 500).unwrap(),
        read: 0,
        at: 21 * 32_000,
        pace: std::time::Duration::from_micros(700),
        stall: Some(std::time::Duration::from_millis(1500)),
        stalled_until: None,
        switch: Some((tx, switch(trial))),
    };
    recorder
        .run(&mut source, &CancellationToken::new())
        .result
        .unwrap();
    let verdict = verdict.try_recv().expect("a verdict");
    let stored = stored_without_a_hole(&outbox_path);
    // The heartbeat names the model running at the end.
    let last = stored.last().unwrap().model.version.clone();
    let now = health.model.lock().unwrap().model.clone().unwrap();
    assert_eq!(now.version, last);
    (stored, verdict)
}

#[test]
fn a_model_that_hears_like_the_previous_one_is_committed_after_its_probation() {
    let (stored, verdict) = through_a_probation(|t| demo_020(hop_1s(), Some(t)));
    assert_eq!(verdict.outcome, warble_agent::probation::Outcome::Commit);
    assert!(verdict.candidate_figures.audio_s >= 15.0, "{verdict:?}");
    // The same weights: the same detecting windows over the same audio.
    assert_eq!(
        verdict.candidate_figures.detected,
        verdict.previous_figures.detected
    );
    assert!(verdict.previous_figures.detected >= 5, "{verdict:?}");
    let versions: Vec<&str> = stored.iter().map(|e| e.model.version.as_str()).collect();
    let first_new = versions.iter().position(|v| *v == "0.2.0").unwrap();
    assert!(
        first_new > 0 && versions[first_new..].iter().all(|v| *v == "0.2.0"),
        "{versions:?}"
    );
}

#[test]
fn a_model_that_detects_nothing_is_rolled_back_and_the_previous_one_carries_on() {
    let deaf = AnalyzeConfig {
        detector: warble_agent::detect::DetectorConfig {
            min_confidence: Some(1.5),
            ..hop_1s().detector
        },
        ..hop_1s()
    };
    let (stored, verdict) = through_a_probation(|t| demo_020(deaf, Some(t)));
    let warble_agent::probation::Outcome::RollBack(why) = &verdict.outcome else {
        panic!("committed: {verdict:?}");
    };
    assert!(why.contains("detected in 0 windows"), "{why}");
    assert_eq!(verdict.candidate_figures.detected, 0);
    // Nothing from the deaf model; the previous model's detections of the whole
    // recording, the probation included (its shadow heard the same audio, its detections
    // were held and reported on the rollback, and it took over where it stood).
    let versions: Vec<&str> = stored.iter().map(|e| e.model.version.as_str()).collect();
    assert!(versions.iter().all(|v| *v == "0.1.0"), "{versions:?}");
    let mut batch = common::demo_analyzer(hop_1s());
    let labels = batch.labels().clone();
    let heard: std::collections::BTreeSet<String> = batch
        .analyze_file(&demo(), |_| {})
        .unwrap()
        .events
        .iter()
        .map(|e| labels.get(e.class).unwrap().code.to_string())
        .collect();
    let reported: std::collections::BTreeSet<String> =
        stored.iter().map(|e| e.code.to_string()).collect();
    assert_eq!(reported, heard);
}

/// The events in the outbox at `path`, in seq order, checked to run from 0 with no hole.
fn stored_without_a_hole(path: &std::path::Path) -> Vec<warble_core::event::Detection> {
    let mut stored: Vec<_> = Outbox::open(path, 1 << 24)
        .unwrap()
        .pending(10_000)
        .unwrap()
        .into_iter()
        .map(|p| p.event)
        .collect();
    stored.sort_by_key(|e| e.seq);
    let seqs: Vec<u64> = stored.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (0..stored.len() as u64).collect::<Vec<_>>(),
        "no hole"
    );
    stored
}
