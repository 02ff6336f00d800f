//! Frame -> journal -> Parquet -> Frame is the identity; truncated journals recover every complete batch.

use std::path::PathBuf;

use mcptape_datasets::journal::{JournalWriter, read_journal};
use mcptape_datasets::{CaptureMeta, CaptureWriter, Direction, Frame, HttpMeta, Kind, Scan, Transport, WriterOptions};
use mcptape_datasets::{schema, writer};
use proptest::prelude::*;

fn opt_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of("[a-zA-Z0-9/_\\-\u{e9}\u{4e2d} ]{0,12}")
}

fn http() -> impl Strategy<Value = Option<HttpMeta>> {
    proptest::option::of(
        (
            opt_text(),
            opt_text(),
            proptest::option::of(any::<u16>()),
            opt_text(),
            opt_text(),
            proptest::collection::vec(("[a-z\\-]{1,10}", ".{0,10}"), 0..4),
        )
            .prop_map(|(method, path, status, content_type, sse_event_id, headers)| HttpMeta {
                method,
                path,
                status,
                content_type,
                sse_event_id,
                headers,
            }),
    )
}

fn frame() -> impl Strategy<Value = Frame> {
    (
        (
            "[a-z0-9]{1,8}",
            any::<u32>(),
            any::<u64>(),
            any::<i64>(),
            any::<u64>(),
            prop_oneof![Just(Direction::C2s), Just(Direction::S2c)],
            prop_oneof![
                Just(Transport::Stdio),
                Just(Transport::Http),
                Just(Transport::Sse),
                Just(Transport::Ws)
            ],
            proptest::sample::select(Kind::ALL.to_vec()),
        ),
        (
            opt_text(),
            opt_text(),
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<i32>()),
            proptest::collection::vec(any::<u8>(), 0..64),
            http(),
            opt_text(),
            opt_text(),
        ),
    )
        .prop_map(
            |(
                (session_id, stream_id, seq, ts_ns, t_ns, direction, transport, kind),
                (method, rpc_id, latency_ns, error_code, payload, http, mcp_session, protocol_version),
            )| Frame {
                session_id,
                stream_id,
                seq,
                ts_ns,
                t_ns,
                direction,
                transport,
                kind,
                method,
                rpc_id,
                latency_ns,
                error_code,
                payload: payload.into(),
                http,
                mcp_session,
                protocol_version,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn frame_journal_parquet_frame_is_identity(batches in proptest::collection::vec(proptest::collection::vec(frame(), 0..12), 1..4)) {
        let dir = tempfile::tempdir().unwrap();
        let meta = CaptureMeta::new("stdio", "test");
        let journal_path = dir.path().join("a.journal");
        let mut j = JournalWriter::create(&journal_path, &meta).unwrap();
        for b in &batches {
            j.append(&schema::to_batch(b)).unwrap();
        }
        j.finish().unwrap();
        let seg = dir.path().join("a.parquet");
        let rows = writer::finalize_journal(&journal_path, &seg, &meta).unwrap();
        let expected: Vec<Frame> = batches.into_iter().flatten().collect();
        prop_assert_eq!(rows as usize, expected.len());
        prop_assert!(!journal_path.exists());
        let back = Scan::new(&[seg]).unwrap().frames().unwrap();
        prop_assert_eq!(back, expected);
    }
}

fn sample(n: usize, session: &str) -> Vec<Frame> {
    (0..n)
        .map(|i| {
            let payload = format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"echo"}}}}"#);
            let mut f = Frame::new(
                session,
                i as u64,
                Direction::C2s,
                Transport::Stdio,
                Kind::Request,
                payload,
            );
            f.method = Some("tools/call".into());
            f.rpc_id = Some(i.to_string());
            f.ts_ns = 1_700_000_000_000_000_000 + i as i64;
            f
        })
        .collect()
}

#[test]
fn truncated_journal_recovers_every_complete_batch_at_every_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.journal");
    let meta = CaptureMeta::new("stdio", "test");
    let mut j = JournalWriter::create(&path, &meta).unwrap();
    let batches: Vec<Vec<Frame>> = (0..4).map(|b| sample(3 + b, &format!("s{b}"))).collect();
    // Byte offsets where each batch ends, taken from the file as it grows.
    let mut ends = Vec::new();
    for b in &batches {
        j.append(&schema::to_batch(b)).unwrap();
        j.flush().unwrap();
        ends.push(std::fs::metadata(&path).unwrap().len() as usize);
    }
    j.finish().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let whole = read_journal(&bytes);
    assert!(whole.damage.is_none(), "{:?}", whole.damage);
    assert_eq!(whole.batches.len(), 4);
    assert_eq!(whole.meta.as_ref().unwrap().transport, "stdio");

    for cut in 0..bytes.len() {
        let got = read_journal(&bytes[..cut]);
        let complete = ends.iter().filter(|&&e| e <= cut).count();
        assert_eq!(got.batches.len(), complete, "cut at {cut}");
        for (b, batch) in got.batches.iter().enumerate() {
            assert_eq!(
                schema::from_batch(batch).unwrap(),
                batches[b],
                "cut at {cut}, batch {b}"
            );
        }
        // A cut at a batch end loses nothing; a cut inside a message is damage, named from the last complete batch
        // on. (A cut between a batch's dictionary messages and the batch itself loses no frame either.)
        let good = if complete == 0 { 0 } else { ends[complete - 1] };
        if ends.contains(&cut) {
            assert!(
                got.damage.is_none(),
                "cut at batch end {cut} reported as damage: {:?}",
                got.damage
            );
        }
        if complete > 0 && cut == good + 1 {
            assert!(
                got.damage.is_some(),
                "cut at {cut}, one byte into a message, went unreported"
            );
        }
        if let Some(d) = got.damage {
            assert!(
                d.offset == good && d.offset + d.lost_bytes == cut,
                "cut at {cut}: {d:?}"
            );
        }
    }
}

#[test]
fn capture_writer_rotates_and_finishes_into_private_segments() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("caps");
    let mut w = CaptureWriter::create(WriterOptions::new(&out, "t", CaptureMeta::new("stdio", "x"))).unwrap();
    for f in sample(5, "a") {
        w.append(f).unwrap();
    }
    let first = w.rotate().unwrap().unwrap();
    for f in sample(3, "b") {
        w.append(f).unwrap();
    }
    w.add_dropped(2);
    let segs = w.finish().unwrap();
    assert_eq!(segs.len(), 2);
    assert_eq!(segs[0], first);
    let all: Vec<PathBuf> = segs.clone();
    for p in &all {
        assert_eq!(
            std::fs::metadata(p).unwrap().permissions().mode() & 0o777,
            0o600,
            "{}",
            p.display()
        );
    }
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o700);
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".parquet"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let scan = Scan::new(std::slice::from_ref(&out)).unwrap();
    assert_eq!(scan.frames().unwrap().len(), 8);
    let metas = scan.metas().unwrap();
    assert_eq!(metas[1].1.dropped_frames, 2);
    let filtered = Scan::new(&[out])
        .unwrap()
        .with_filter(mcptape_datasets::Filter {
            sessions: vec!["b".into()],
            ..Default::default()
        })
        .frames()
        .unwrap();
    assert_eq!(filtered.len(), 3);
    assert!(filtered.iter().all(|f| f.session_id == "b"));
}

#[test]
fn bad_files_are_named_in_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.parquet");
    std::fs::write(&empty, b"").unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, b"hello, not parquet at all").unwrap();
    let missing = dir.path().join("missing.parquet");
    let empty_dir = dir.path().join("nothing");
    std::fs::create_dir(&empty_dir).unwrap();
    for (path, needle) in [
        (&empty, "empty file"),
        (&text, "not a Parquet file"),
        (&missing, "no such file"),
        (&empty_dir, "holds no capture files"),
    ] {
        let err = Scan::new(std::slice::from_ref(path))
            .and_then(|s| s.frames())
            .unwrap_err()
            .to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains(needle), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }
    // A Parquet file of another schema is refused too: see tests/integration/pyarrow.rs, which writes one.
}

/// Hands out at most the next of `sizes` bytes per read, in turn.
struct Trickle<'a> {
    bytes: &'a [u8],
    sizes: Vec<usize>,
    turn: usize,
}

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let size = self.sizes[self.turn % self.sizes.len()].max(1);
        self.turn += 1;
        let n = size.min(out.len()).min(self.bytes.len());
        out[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}

fn four_batch_journal() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.journal");
    let mut j = JournalWriter::create(&path, &CaptureMeta::new("stdio", "test")).unwrap();
    for b in 0..4 {
        j.append(&schema::to_batch(&sample(3 + b, &format!("s{b}")))).unwrap();
    }
    j.finish().unwrap();
    std::fs::read(&path).unwrap()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// Read piece by piece, as finalizing reads a journal, a journal (whole or cut anywhere) gives the same
    /// batches, metadata and damage as decoded at once.
    #[test]
    fn a_journal_read_in_pieces_decodes_as_it_does_whole(
        cut in proptest::prelude::any::<proptest::sample::Index>(),
        whole in proptest::prelude::any::<bool>(),
        sizes in proptest::collection::vec(1usize..700, 1..6),
    ) {
        use mcptape_datasets::journal::JournalReader;
        let bytes = four_batch_journal();
        let cut = if whole { bytes.len() } else { cut.index(bytes.len()) };
        let expected = read_journal(&bytes[..cut]);
        let mut reader = JournalReader::new(Trickle { bytes: &bytes[..cut], sizes, turn: 0 });
        let batches: Vec<_> = reader.by_ref().collect();
        let (meta, damage) = reader.finish();
        proptest::prop_assert_eq!(&batches, &expected.batches);
        proptest::prop_assert_eq!(meta.map(|m| m.to_pairs()), expected.meta.map(|m| m.to_pairs()));
        proptest::prop_assert_eq!(damage, expected.damage);
    }
}

#[test]
fn finalizing_a_damaged_journal_fails_and_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let journal_path = dir.path().join("d.journal");
    let bytes = four_batch_journal();
    // Cut inside the last batch (the end-of-stream marker and 12 bytes of the batch go).
    std::fs::write(&journal_path, &bytes[..bytes.len() - 20]).unwrap();
    let seg = dir.path().join("d.parquet");
    let err = writer::finalize_journal(&journal_path, &seg, &CaptureMeta::new("stdio", "test")).unwrap_err();
    assert!(err.to_string().contains("d.journal"), "{err}");
    assert!(journal_path.exists(), "the journal must stay for `dataset recover`");
    assert!(!seg.exists(), "no segment from a damaged journal");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "no temporary file left: {leftovers:?}");
}

#[test]
fn a_large_flush_is_written_in_pieces_that_hold_every_frame_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("caps");
    let mut w = CaptureWriter::create(WriterOptions::new(&out, "t", CaptureMeta::new("stdio", "x"))).unwrap();
    let frames = sample(2 * writer::FLUSH_PIECE + 44, "a");
    for f in frames.clone() {
        w.append(f).unwrap();
    }
    w.flush().unwrap();
    let journal = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".journal"))
        .expect("an open journal");
    let contents = read_journal(&std::fs::read(&journal).unwrap());
    assert!(contents.damage.is_none(), "{:?}", contents.damage);
    let sizes: Vec<usize> = contents.batches.iter().map(|b| b.num_rows()).collect();
    assert_eq!(sizes, [writer::FLUSH_PIECE, writer::FLUSH_PIECE, 44]);
    let payloads: Vec<Vec<u8>> = contents
        .batches
        .iter()
        .flat_map(|b| schema::from_batch(b).unwrap())
        .map(|f| f.payload.to_vec())
        .collect();
    let sent: Vec<Vec<u8>> = frames.iter().map(|f| f.payload.to_vec()).collect();
    assert_eq!(payloads, sent);
    w.finish().unwrap();
    assert_eq!(Scan::new(&[out]).unwrap().frames().unwrap().len(), frames.len());
}
