//! Wire-level costs on the tap's path, over the benchmark mix: framing (inline on the forwarding path), then
//! classification, redaction and annotation (on the writer task), separately and as the writer runs them (one walk
//! per payload for classification and redaction).
//!
//! Throughput is reported both per message and per byte (`ElementsAndBytes`), so one measurement gives frames/s
//! and MB/s; the harness reads both back from `target/criterion`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use mcptape_benches as b;
use mcptape_datasets::redact::RedactionRules;

/// Messages in the mix every wire bench runs over.
const N: usize = 10_000;

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
}

fn both(messages: usize, bytes: u64) -> Throughput {
    Throughput::ElementsAndBytes {
        elements: messages as u64,
        bytes,
    }
}

fn wire(c: &mut Criterion) {
    let mix = b::mix(N);
    let bytes = b::payload_bytes(&mix);
    let rules = RedactionRules::default();

    let mut g = c.benchmark_group("classify");
    g.throughput(both(mix.len(), bytes));
    g.bench_function("mix", |bench| bench.iter(|| b::classify_all(black_box(&mix))));
    g.bench_function("and_redact_mix_one_walk", |bench| {
        bench.iter(|| b::classify_and_redact_all(&rules, black_box(&mix)))
    });
    g.bench_function("serde_json_value_baseline", |bench| {
        bench.iter(|| b::parse_all(black_box(&mix)))
    });
    g.finish();

    let ndjson = b::chunks(&b::ndjson_stream(&mix), b::CHUNK);
    let mut g = c.benchmark_group("ndjson");
    g.throughput(both(mix.len(), ndjson.iter().map(|c| c.len() as u64).sum()));
    g.bench_function("frame_16KiB_reads", |bench| {
        bench.iter(|| b::frame_ndjson(black_box(&ndjson)))
    });
    g.finish();

    let sse = b::chunks(&b::sse_stream(&mix), b::CHUNK);
    let mut g = c.benchmark_group("sse");
    g.throughput(both(mix.len(), sse.iter().map(|c| c.len() as u64).sum()));
    g.bench_function("decode_16KiB_reads", |bench| {
        bench.iter(|| b::decode_sse(black_box(&sse)))
    });
    g.finish();

    let mut g = c.benchmark_group("redact");
    g.throughput(both(mix.len(), bytes));
    g.bench_function("mix_no_secret", |bench| {
        bench.iter(|| b::redact_all(&rules, black_box(&mix)))
    });
    let secret = b::secret_payload();
    g.throughput(both(1, secret.len() as u64));
    g.bench_function("payload_with_secret", |bench| {
        bench.iter(|| rules.payload(black_box(&secret)))
    });
    g.finish();

    let raw = b::raw_frames(N);
    let mut g = c.benchmark_group("annotate");
    g.throughput(both(raw.len(), b::frame_bytes(&raw)));
    g.bench_function("mix", |bench| {
        bench.iter_batched(|| raw.clone(), b::annotate_all, BatchSize::LargeInput)
    });
    g.bench_function("and_redact_mix_writer_path", |bench| {
        bench.iter_batched(
            || raw.clone(),
            |frames| b::annotate_and_redact_all(&rules, frames),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = wire
}
criterion_main!(benches);
