//! Read buffers the writer thread prepares for the byte-stream relays (stdio, unix sockets).
//!
//! A relay hands each large read to the tap whole, without a copy, and reads on into another buffer. During a
//! burst the writer falls behind and holds the handed buffers until it gets to them, so every new buffer is
//! memory no thread has touched yet: the first write into it faults and the kernel zeroes the page (2 MiB at a
//! time with transparent huge pages). In a 75 MB burst that zeroing was about 60% of the relay threads' perf
//! samples. So the writer touches buffers ahead of need, between the messages it handles, and the relay's reads
//! land in memory that is already mapped: the cost moves off the traffic's path, onto the thread that is behind
//! anyway. When none is ready, the relay makes its own, as before.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Size of one relay read.
pub const READ_BUFFER: usize = 64 * 1024;

/// Buffers kept ready after the first miss (256 KiB); each miss doubles it.
const MIN_READY: usize = 4;
/// At most 16 MiB kept ready: at 800 MB/s through each direction, about ten milliseconds of reads, longer than the
/// scheduler keeps a busy writer off a core.
const MAX_READY: usize = 256;

/// The pool shared by a tap's relays (who take) and its writer (who refills, and empties it when traffic pauses).
/// Nothing is prepared until a relay has handed over a large read and found no buffer ready, so the many quiet
/// stdio servers a client starts never hold one.
#[derive(Debug, Default)]
pub(crate) struct ReadBuffers {
    ready: Mutex<Vec<Vec<u8>>>,
    /// `ready.len()`, readable without the lock.
    count: AtomicUsize,
    /// How many to keep ready; 0 until a relay misses.
    target: AtomicUsize,
}

impl ReadBuffers {
    /// A buffer of [`READ_BUFFER`] bytes: a prepared one if there is one; otherwise a new one, and the writer is
    /// asked to keep twice as many ready.
    pub(crate) fn take(&self) -> Vec<u8> {
        if self.count.load(Ordering::Relaxed) > 0 {
            let mut ready = self.ready.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(b) = ready.pop() {
                self.count.store(ready.len(), Ordering::Relaxed);
                return b;
            }
        }
        let target = self.target.load(Ordering::Relaxed);
        self.target
            .store((target * 2).clamp(MIN_READY, MAX_READY), Ordering::Relaxed);
        vec![0u8; READ_BUFFER]
    }

    /// Called by the writer between messages: tops the pool up once it is half empty. Two atomic loads when
    /// nothing is needed.
    pub(crate) fn refill(&self) {
        let target = self.target.load(Ordering::Relaxed);
        let have = self.count.load(Ordering::Relaxed);
        if have >= target.div_ceil(2) {
            return;
        }
        // Made outside the lock, so a relay taking one never waits for a page fault.
        let fresh: Vec<Vec<u8>> = (have..target).map(|_| touched()).collect();
        let mut ready = self.ready.lock().unwrap_or_else(|e| e.into_inner());
        ready.extend(fresh);
        self.count.store(ready.len(), Ordering::Relaxed);
    }

    /// Called by the writer when traffic pauses: frees the prepared buffers; the next burst starts small again.
    pub(crate) fn trim(&self) {
        if self.target.load(Ordering::Relaxed) == 0 {
            return;
        }
        self.target.store(0, Ordering::Relaxed);
        let spare = {
            let mut ready = self.ready.lock().unwrap_or_else(|e| e.into_inner());
            self.count.store(0, Ordering::Relaxed);
            std::mem::take(&mut *ready)
        };
        drop(spare);
    }

    #[cfg(test)]
    fn ready(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

/// A buffer whose every page has been written, so the kernel has mapped it. Not `vec![0; n]`: that asks the
/// allocator for zeroed memory, which it hands out untouched when it is fresh from the kernel.
fn touched() -> Vec<u8> {
    let mut b = vec![0u8; READ_BUFFER];
    for page in b.chunks_mut(4096) {
        page[0] = 1;
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_prepared_until_a_relay_misses() {
        let pool = ReadBuffers::default();
        pool.refill();
        assert_eq!(pool.ready(), 0);
        assert_eq!(pool.take().len(), READ_BUFFER);
        pool.refill();
        assert_eq!(pool.ready(), MIN_READY);
    }

    #[test]
    fn each_miss_doubles_the_pool_up_to_its_cap() {
        let pool = ReadBuffers::default();
        let mut want = MIN_READY;
        let _ = pool.take();
        loop {
            pool.refill();
            assert_eq!(pool.ready(), want);
            for _ in 0..want {
                assert_eq!(pool.take().len(), READ_BUFFER);
            }
            assert_eq!(pool.ready(), 0);
            let _ = pool.take();
            if want == MAX_READY {
                break;
            }
            want *= 2;
        }
        pool.refill();
        assert_eq!(pool.ready(), MAX_READY, "never past the cap");
    }

    #[test]
    fn refills_only_when_half_empty() {
        let pool = ReadBuffers::default();
        let _ = pool.take();
        pool.refill();
        for _ in 0..MIN_READY / 2 {
            let _ = pool.take();
        }
        pool.refill();
        assert_eq!(pool.ready(), MIN_READY / 2, "half full is enough");
        let _ = pool.take();
        pool.refill();
        assert_eq!(pool.ready(), MIN_READY);
    }

    #[test]
    fn a_pause_frees_the_pool_and_the_next_burst_starts_small() {
        let pool = ReadBuffers::default();
        let _ = pool.take();
        pool.refill();
        let _ = pool.take();
        for _ in 0..MIN_READY {
            let _ = pool.take();
        }
        pool.refill();
        assert_eq!(pool.ready(), MIN_READY * 2);
        pool.trim();
        assert_eq!(pool.ready(), 0);
        pool.refill();
        assert_eq!(pool.ready(), 0, "nothing until the next miss");
        let _ = pool.take();
        pool.refill();
        assert_eq!(pool.ready(), MIN_READY);
    }
}
