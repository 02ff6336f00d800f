//! Storage costs of a capture, over the benchmark mix: Arrow batch building, the crash journal (append + flush
//! per batch, as the writer does), the Parquet segment (zstd, fsync, rename) and the whole [`CaptureWriter`] path
//! (frames in, journal, segment out), against a naive baseline that appends NDJSON lines to a buffered file.
//!
//! Files go to a temporary folder and are deleted outside the timed section. Each iteration takes milliseconds
//! to a few hundred, so the groups use flat sampling: 20 samples without criterion's linear ramp.
//!
//! [`CaptureWriter`]: mcptape_datasets::CaptureWriter

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{BatchSize, BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use mcptape_benches::{self as b, RemoveOnDrop};
use mcptape_datasets::schema;

/// Frames every storage bench writes.
const N: usize = 10_000;

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
}

fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
    frames: usize,
    bytes: u64,
) -> BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::ElementsAndBytes {
        elements: frames as u64,
        bytes,
    });
    g
}

fn storage(c: &mut Criterion) {
    let mix = b::mix(N);
    let frames = b::frames(N);
    let bytes = b::frame_bytes(&frames);
    let batches = b::batches(&frames);
    let meta = b::meta();
    let dir = tempfile::tempdir().expect("a temporary folder");
    let next = AtomicU64::new(0);
    let fresh = |ext: &str| -> PathBuf {
        dir.path()
            .join(format!("{}.{ext}", next.fetch_add(1, Ordering::Relaxed)))
    };

    let mut g = group(c, "arrow", frames.len(), bytes);
    g.bench_function("to_batch_4096", |bench| {
        bench.iter(|| {
            black_box(&frames)
                .chunks(b::BATCH_ROWS)
                .map(schema::to_batch)
                .map(|b| b.num_rows())
                .sum::<usize>()
        })
    });
    g.finish();

    let mut g = group(c, "journal", frames.len(), bytes);
    g.bench_function("append_flush", |bench| {
        bench.iter_batched(
            || fresh("journal"),
            |path| {
                let written = b::write_journal(&path, &meta, &batches).expect("journal written");
                RemoveOnDrop(written)
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("raw_ndjson_baseline", |bench| {
        bench.iter_batched(
            || fresh("ndjson"),
            |path| {
                b::write_raw_ndjson(&path, &mix).expect("ndjson written");
                RemoveOnDrop(path)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();

    let mut g = group(c, "parquet", frames.len(), bytes);
    g.bench_function("write_segment", |bench| {
        bench.iter_batched(
            || fresh("parquet"),
            |path| {
                b::write_parquet(&path, &meta, &batches).expect("segment written");
                RemoveOnDrop(path)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();

    let mut g = group(c, "capture_writer", frames.len(), bytes);
    g.bench_function("append_finish", |bench| {
        bench.iter_batched(
            || (fresh("capture"), frames.clone()),
            |(path, frames)| {
                b::capture(&path, frames).expect("capture written");
                RemoveOnDrop(path)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = storage
}
criterion_main!(benches);
