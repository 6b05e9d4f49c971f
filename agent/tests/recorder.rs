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
    switch: Option<(
        std::sync::mpsc::Sender<warble_agent::recorder::ModelSwitch>,
        warble_agent::recorder::ModelSwitch,
    )>,
}

impl AudioSource for SwitchingSource {
    fn read(&mut self, out: &mut Vec<f32>) -> usize {
        std::thread::sleep(std::time::Duration::from_micros(700));
        let n = self.inner.read(out);
        self.read += n;
        if self.read >= self.at
            && let Some((tx, switch)) = self.switch.take()
        {
            tx.send(switch).unwrap();
        }
        n
    }

    fn ended(&self) -> bool {
        self.inner.ended()
    }
}

#[test]
fn a_model_switch_mid_stream_changes_the_events_model_at_one_boundary_without_a_seq_hole() {
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
    let switch = warble_agent::recorder::ModelSwitch {
        model: next.model_ref(),
        analyzer: next
            .into_analyzer(AnalyzeConfig {
                batch: 1,
                ..AnalyzeConfig::default()
            })
            .unwrap(),
    };

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
        switch: Some((tx, switch)),
    };
    recorder
        .run(&mut source, &CancellationToken::new())
        .result
        .unwrap();
    let mut stored: Vec<_> = Outbox::open(&outbox_path, 1 << 24)
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
