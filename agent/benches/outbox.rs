//! Durable outbox throughput: events committed per second (WAL, synchronous = FULL), one
//! event per transaction (the worst case) and 16 per transaction (one inference batch).
//! The database lives on the disk of the working directory, not on tmpfs, so every
//! commit pays a real fsync. Run: `cargo bench -p warble-agent --bench outbox`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;
use common::sample_event;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use warble_agent::outbox::Outbox;
use warble_core::event::Detection;

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
                let events: Vec<Detection> =
                    (0..batch as u64).map(|i| sample_event(seq + i)).collect();
                seq += batch as u64;
                outbox.push(&events).unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
