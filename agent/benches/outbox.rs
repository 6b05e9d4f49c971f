//! Durable outbox throughput: events committed per second (WAL, synchronous = FULL), one
//! event per transaction (the worst case) and 16 per transaction (one inference batch).
//! The database lives on the disk of the working directory, not on tmpfs, so every
//! commit pays a real fsync. Run: `cargo bench -p warble-agent --bench outbox`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use warble_agent::outbox::Outbox;
use warble_core::SpeciesCode;
use warble_core::event::{DETECTION_SCHEMA, Detection, ModelRef};

fn event(seq: u64) -> Detection {
    let start = chrono::DateTime::parse_from_rfc3339("2026-05-01T04:30:00Z")
        .unwrap()
        .to_utc();
    Detection {
        schema: DETECTION_SCHEMA.into(),
        id: Detection::make_id("wetland-03", 7, seq),
        station: "wetland-03".into(),
        boot: 7,
        seq,
        start,
        end: start + chrono::Duration::seconds(3),
        start_sample: seq * 96_000,
        end_sample: seq * 96_000 + 96_000,
        code: SpeciesCode::new("eurrob1").unwrap(),
        scientific: "Erithacus rubecula".into(),
        common: "European Robin".into(),
        confidence: 0.87,
        model: ModelRef {
            id: "warble-demo".into(),
            version: "0.1.0".into(),
        },
        location: None,
        clip: None,
        historical: false,
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(".").unwrap();
    let mut group = c.benchmark_group("outbox");
    group.sample_size(10);
    for batch in [1usize, 16] {
        let mut outbox = Outbox::open(dir.path().join(format!("b{batch}.db")), 1 << 32).unwrap();
        let mut seq = 0u64;
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(format!("push {batch} per commit"), |b| {
            b.iter(|| {
                let events: Vec<Detection> = (0..batch as u64).map(|i| event(seq + i)).collect();
                seq += batch as u64;
                outbox.push(&events).unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
