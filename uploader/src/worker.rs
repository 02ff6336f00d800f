//! The queue and the one upload task that drains it, head first.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::io::AsyncReadExt;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::spool::{self, marker_path};
use crate::target::{self, S3Url};
use crate::{UploadConfig, UploadError, UploadStats};

#[derive(Debug, Clone)]
struct Item {
    path: PathBuf,
    key: String,
    size: u64,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Item>,
    /// The segment the task is working on; `waiting` while it sleeps between attempts (then it may be dropped).
    head: Option<Item>,
    waiting: bool,
    /// Paths queued or at the head, so a segment submitted twice (or found by the start-up scan and then
    /// submitted) is uploaded once.
    known: HashSet<PathBuf>,
    draining: bool,
    stats: UploadStats,
}

#[derive(Debug)]
struct Shared {
    cfg: UploadConfig,
    url: S3Url,
    state: Mutex<State>,
    wake: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Uploads finished segments in the background; see the crate docs for the guarantees.
#[derive(Debug)]
pub struct Uploader {
    shared: Arc<Shared>,
    /// Taken by `shutdown`; dropping an `Uploader` without it aborts the task (the spool keeps what was left).
    task: Option<JoinHandle<()>>,
}

impl Drop for Uploader {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Uploader {
    /// Builds the S3 client, queues the finished segments of `cfg.spool_dir` that have no upload marker (oldest
    /// first) and spawns the upload task on the current tokio runtime.
    pub fn start(cfg: UploadConfig) -> Result<Uploader, UploadError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| UploadError::NoRuntime)?;
        let url = target::parse_url(&cfg.url)?;
        let store = target::build_store(&cfg, &url)?;
        let found = spool::scan(&cfg.spool_dir, cfg.delete_after_upload).map_err(|source| UploadError::Spool {
            path: cfg.spool_dir.clone(),
            source,
        })?;
        let shared = Arc::new(Shared {
            cfg,
            url,
            state: Mutex::default(),
            wake: Notify::new(),
        });
        {
            let mut st = shared.lock();
            for f in found {
                enqueue(
                    &mut st,
                    Item {
                        path: f.path,
                        key: f.key,
                        size: f.size,
                    },
                );
            }
            enforce_bound(&shared.cfg, &mut st);
        }
        let task = rt.spawn(run(shared.clone(), store));
        Ok(Uploader {
            shared,
            task: Some(task),
        })
    }

    /// Queues a finished, immutable segment; `key` is its path relative to the capture folder (forward slashes).
    /// Never blocks on the store. A path already queued is ignored.
    pub fn submit(&self, path: PathBuf, key: String) {
        let size = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) => {
                eprintln!("mcptape upload: cannot queue {}: {e}", path.display());
                self.shared.lock().stats.dropped_segments += 1;
                return;
            }
        };
        if let Err(e) = target::object_path(&self.shared.url, &key) {
            eprintln!("mcptape upload: cannot queue {}: {e}", path.display());
            self.shared.lock().stats.dropped_segments += 1;
            return;
        }
        {
            let mut st = self.shared.lock();
            enqueue(&mut st, Item { path, key, size });
            enforce_bound(&self.shared.cfg, &mut st);
        }
        self.shared.wake.notify_one();
    }

    pub fn stats(&self) -> UploadStats {
        self.shared.lock().stats.clone()
    }

    /// Whether the store confirmed this segment (its marker exists). Retention may delete only these.
    pub fn is_uploaded(&self, path: &Path) -> bool {
        marker_path(path).exists()
    }

    /// Keeps uploading until the backlog is empty or `deadline` passed, then stops. An unfinished upload is
    /// abandoned; its segment stays in the spool unmarked and is queued again by the next start.
    pub async fn shutdown(mut self, deadline: Duration) -> UploadStats {
        self.shared.lock().draining = true;
        self.shared.wake.notify_one();
        let Some(mut task) = self.task.take() else {
            return self.stats();
        };
        if tokio::time::timeout(deadline, &mut task).await.is_err() {
            task.abort();
            let _ = task.await;
            let mut st = self.shared.lock();
            if let Some(head) = st.head.take() {
                st.queue.push_front(head);
            }
        }
        self.shared.lock().stats.clone()
    }
}

fn enqueue(st: &mut State, item: Item) {
    if !st.known.insert(item.path.clone()) {
        return;
    }
    st.stats.backlog_segments += 1;
    st.stats.backlog_bytes += item.size;
    st.queue.push_back(item);
}

/// The documented drop policy: while the waiting bytes exceed the bound, drop the oldest waiting segment — the
/// head if it is only sleeping between attempts, else the front of the queue (never one mid-upload).
fn enforce_bound(cfg: &UploadConfig, st: &mut State) {
    while st.stats.backlog_bytes > cfg.max_spool_bytes {
        let item = if st.waiting && st.head.is_some() {
            st.waiting = false;
            st.head.take()
        } else {
            st.queue.pop_front()
        };
        let Some(item) = item else { break };
        forget(st, &item);
        st.stats.dropped_segments += 1;
        let fate = if cfg.delete_after_upload {
            match std::fs::remove_file(&item.path) {
                Ok(()) => "deleted without uploading".to_string(),
                Err(e) => format!("not uploaded; deleting it failed: {e}"),
            }
        } else {
            "left in the folder, queued again at the next start".to_string()
        };
        eprintln!(
            "mcptape upload: spool over {} bytes: dropped the oldest waiting segment {} ({} bytes), {fate}",
            cfg.max_spool_bytes, item.key, item.size
        );
    }
}

fn forget(st: &mut State, item: &Item) {
    st.known.remove(&item.path);
    st.stats.backlog_segments -= 1;
    st.stats.backlog_bytes -= item.size;
}

/// Why one attempt failed.
enum Failure {
    /// The local file is gone: nothing to retry.
    Vanished(String),
    Retry(String),
}

async fn run(shared: Arc<Shared>, store: Arc<dyn ObjectStore>) {
    let mut rng = Jitter::seeded();
    loop {
        // Take the next segment, or stop once draining with nothing left.
        let item = loop {
            let wait = shared.wake.notified();
            {
                let mut st = shared.lock();
                if let Some(item) = st.queue.pop_front() {
                    st.head = Some(item.clone());
                    st.waiting = false;
                    break item;
                }
                if st.draining {
                    return;
                }
            }
            wait.await;
        };
        let mut attempt = 0u32;
        loop {
            match upload(&shared, store.as_ref(), &item).await {
                Ok(()) => break,
                Err(Failure::Vanished(e)) => {
                    eprintln!("mcptape upload: {} vanished before its upload, skipped: {e}", item.key);
                    let mut st = shared.lock();
                    st.head = None;
                    forget(&mut st, &item);
                    st.stats.dropped_segments += 1;
                    break;
                }
                Err(Failure::Retry(e)) => {
                    let delay = shared.cfg.backoff.delay(attempt, rng.unit());
                    attempt = attempt.saturating_add(1);
                    eprintln!(
                        "mcptape upload: {} attempt {attempt} failed, retrying in {:.1}s: {e}",
                        item.key,
                        delay.as_secs_f64()
                    );
                    {
                        let mut st = shared.lock();
                        st.stats.failed_attempts += 1;
                        st.stats.last_error = Some(e);
                        st.waiting = true;
                    }
                    if !sleep_unless_dropped(&shared, Instant::now() + delay).await {
                        break; // the spool bound dropped it meanwhile
                    }
                }
            }
        }
    }
}

/// Sleeps until `until`; false if the head was dropped meanwhile (then the task moves on at once).
async fn sleep_unless_dropped(shared: &Shared, until: Instant) -> bool {
    loop {
        let wait = shared.wake.notified();
        {
            let mut st = shared.lock();
            if st.head.is_none() {
                return false;
            }
            if Instant::now() >= until {
                st.waiting = false;
                return true;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep_until(until) => {}
            _ = wait => {}
        }
    }
}

/// One attempt: PUT (multipart when large), HEAD to confirm the size, marker, then the local delete.
async fn upload(shared: &Shared, store: &dyn ObjectStore, item: &Item) -> Result<(), Failure> {
    let cfg = &shared.cfg;
    let location = target::object_path(&shared.url, &item.key).map_err(Failure::Vanished)?;
    let size = match tokio::fs::metadata(&item.path).await {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Failure::Vanished(e.to_string())),
        Err(e) => return Err(Failure::Retry(format!("reading {}: {e}", item.path.display()))),
    };
    let put_etag = if size > cfg.multipart_threshold {
        put_multipart(store, &location, &item.path, cfg.part_size).await?
    } else {
        let data = tokio::fs::read(&item.path)
            .await
            .map_err(|e| local_failure(&item.path, e))?;
        let r = store
            .put(&location, PutPayload::from(Bytes::from(data)))
            .await
            .map_err(store_failure)?;
        r.e_tag
    };
    let meta = store.head(&location).await.map_err(store_failure)?;
    if meta.size != size {
        return Err(Failure::Retry(format!(
            "the store reports {} bytes for {location}, sent {size}",
            meta.size
        )));
    }
    if let (Some(sent), Some(seen)) = (&put_etag, &meta.e_tag)
        && sent != seen
    {
        return Err(Failure::Retry(format!(
            "ETag changed under {location}: PUT {sent}, HEAD {seen}"
        )));
    }
    let marked = spool::write_marker(&item.path, &item.key, size, meta.e_tag.as_deref());
    if let Err(e) = &marked {
        // The object is safely stored; without a marker a restart would upload the same bytes again.
        eprintln!(
            "mcptape upload: {} uploaded but its marker could not be written: {e}",
            item.key
        );
    }
    let mut st = shared.lock();
    st.head = None;
    forget(&mut st, item);
    st.stats.uploaded_segments += 1;
    st.stats.uploaded_bytes += size;
    drop(st);
    if cfg.delete_after_upload && marked.is_ok() {
        if let Err(e) = std::fs::remove_file(&item.path) {
            eprintln!(
                "mcptape upload: {} uploaded, deleting the local copy failed: {e}",
                item.key
            );
        } else {
            let _ = std::fs::remove_file(marker_path(&item.path));
        }
    }
    Ok(())
}

async fn put_multipart(
    store: &dyn ObjectStore,
    location: &ObjectPath,
    path: &Path,
    part_size: usize,
) -> Result<Option<String>, Failure> {
    let part_size = part_size.max(5 << 20);
    let mut file = tokio::fs::File::open(path).await.map_err(|e| local_failure(path, e))?;
    let mut upload = store.put_multipart(location).await.map_err(store_failure)?;
    let result: Result<Option<String>, Failure> = async {
        loop {
            let mut buf = Vec::with_capacity(part_size);
            (&mut file)
                .take(part_size as u64)
                .read_to_end(&mut buf)
                .await
                .map_err(|e| local_failure(path, e))?;
            if buf.is_empty() {
                break;
            }
            let last = buf.len() < part_size;
            upload
                .put_part(PutPayload::from(Bytes::from(buf)))
                .await
                .map_err(store_failure)?;
            if last {
                break;
            }
        }
        Ok(upload.complete().await.map_err(store_failure)?.e_tag)
    }
    .await;
    if result.is_err() {
        let _ = upload.abort().await;
    }
    result
}

fn local_failure(path: &Path, e: std::io::Error) -> Failure {
    if e.kind() == std::io::ErrorKind::NotFound {
        Failure::Vanished(e.to_string())
    } else {
        Failure::Retry(format!("reading {}: {e}", path.display()))
    }
}

fn store_failure(e: object_store::Error) -> Failure {
    Failure::Retry(one_line(&e))
}

/// The error and its sources on one line (object_store nests the HTTP cause several levels deep).
fn one_line(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s.replace('\n', " ")
}

/// splitmix64 seeded from the clock: jitter only needs to differ between processes, not to be unpredictable.
struct Jitter(u64);

impl Jitter {
    fn seeded() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Jitter(nanos as u64 ^ u64::from(std::process::id()).rotate_left(32))
    }

    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Backoff;

    #[test]
    fn backoff_grows_is_capped_and_jittered_within_half() {
        let b = Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            factor: 2.0,
        };
        assert_eq!(b.delay(0, 1.0), Duration::from_secs(1));
        assert_eq!(b.delay(0, 0.0), Duration::from_millis(500));
        assert_eq!(b.delay(3, 1.0), Duration::from_secs(8));
        assert_eq!(b.delay(30, 1.0), Duration::from_secs(60));
        assert_eq!(b.delay(u32::MAX, 0.0), Duration::from_secs(30));
        let mut j = Jitter(7);
        for _ in 0..1000 {
            let u = j.unit();
            assert!((0.0..1.0).contains(&u));
        }
    }

    fn cfg(dir: &Path, max: u64, delete: bool) -> UploadConfig {
        let mut c = UploadConfig::new("s3://b/p", dir);
        c.max_spool_bytes = max;
        c.delete_after_upload = delete;
        c
    }

    #[test]
    fn the_bound_drops_the_oldest_waiting_segments_first() {
        let d = tempfile::tempdir().unwrap();
        let mut st = State::default();
        let items: Vec<Item> = (0..4)
            .map(|i| {
                let path = d.path().join(format!("{i}.parquet"));
                std::fs::write(&path, [0u8; 10]).unwrap();
                Item {
                    path,
                    key: format!("{i}.parquet"),
                    size: 10,
                }
            })
            .collect();
        // The head (0) is sleeping between attempts, 1..3 wait in the queue.
        st.head = Some(items[0].clone());
        st.waiting = true;
        st.known.insert(items[0].path.clone());
        st.stats.backlog_segments = 1;
        st.stats.backlog_bytes = 10;
        for it in &items[1..] {
            enqueue(&mut st, it.clone());
        }
        enforce_bound(&cfg(d.path(), 25, true), &mut st);
        assert_eq!(st.stats.dropped_segments, 2);
        assert!(st.head.is_none());
        assert_eq!(
            st.queue.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(),
            ["2.parquet", "3.parquet"]
        );
        assert_eq!((st.stats.backlog_segments, st.stats.backlog_bytes), (2, 20));
        assert!(
            !items[0].path.exists() && !items[1].path.exists(),
            "dropped files deleted in spool mode"
        );
        assert!(items[2].path.exists());

        // Mid-upload the head is kept; without delete_after_upload the files stay.
        st.head = Some(items[2].clone());
        st.waiting = false;
        let front = st.queue.pop_front().unwrap();
        assert_eq!(front.key, "2.parquet");
        enforce_bound(&cfg(d.path(), 5, false), &mut st);
        assert_eq!(st.stats.dropped_segments, 3);
        assert!(st.head.is_some());
        assert!(items[3].path.exists());
    }

    #[test]
    fn a_segment_queued_twice_is_uploaded_once() {
        let mut st = State::default();
        let it = Item {
            path: "/x/a.parquet".into(),
            key: "a.parquet".into(),
            size: 3,
        };
        enqueue(&mut st, it.clone());
        enqueue(&mut st, it);
        assert_eq!(st.queue.len(), 1);
        assert_eq!((st.stats.backlog_segments, st.stats.backlog_bytes), (1, 3));
    }
}
