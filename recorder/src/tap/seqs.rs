//! Each session's frame numbering (`seq`, 0, 1, 2, … without a hole).
//!
//! A session's numbering is freed when the session ends, but a frame can still come after the end: a stdio relay
//! thread that sees the client's EOF only after the child has exited queues its `eof` frame late. So the next number
//! of recently ended sessions is kept (a bounded number of them), and a late frame continues the numbering instead
//! of starting again at 0, which would give the session two frames with the same `seq`.

use std::collections::VecDeque;
use std::sync::Arc;

use foldhash::HashMap;

/// Ended sessions whose next number is kept.
const ENDED_KEPT: usize = 1024;

#[derive(Debug, Default)]
pub(super) struct Seqs {
    live: HashMap<Arc<str>, u64>,
    /// Next number and the end's count, for telling a current entry from a stale mention in `ended_order`.
    ended: HashMap<Arc<str>, (u64, u64)>,
    /// Ended sessions, oldest first, with the end's count.
    ended_order: VecDeque<(Arc<str>, u64)>,
    ends: u64,
}

impl Seqs {
    /// The session's next number.
    pub(super) fn next(&mut self, session: &Arc<str>) -> u64 {
        let seq = match self.live.get_mut(session) {
            Some(seq) => seq,
            None => {
                let start = self.ended.remove(session).map_or(0, |(next, _)| next);
                self.live.entry(session.clone()).or_insert(start)
            }
        };
        let s = *seq;
        *seq += 1;
        s
    }

    /// The session ended: its numbering leaves the live map and is kept for late frames.
    pub(super) fn end(&mut self, session: &Arc<str>) {
        let Some(next) = self.live.remove(session) else {
            return;
        };
        while self.ended_order.len() >= ENDED_KEPT {
            if let Some((old, end)) = self.ended_order.pop_front() {
                // A session that came back to life and ended again has a newer entry: that one stays.
                if self.ended.get(&old).is_some_and(|&(_, e)| e == end) {
                    self.ended.remove(&old);
                }
            }
        }
        self.ends += 1;
        self.ended.insert(session.clone(), (next, self.ends));
        self.ended_order.push_back((session.clone(), self.ends));
    }

    #[cfg(test)]
    fn kept(&self) -> usize {
        self.ended.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_after_the_end_continues_the_numbering() {
        let mut seqs = Seqs::default();
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        assert_eq!((seqs.next(&a), seqs.next(&a), seqs.next(&b)), (0, 1, 0));
        seqs.end(&a);
        assert_eq!(seqs.next(&a), 2, "late frame");
        assert_eq!(seqs.next(&a), 3);
        seqs.end(&a);
        seqs.end(&a);
        assert_eq!(seqs.next(&a), 4);
        assert_eq!(seqs.next(&b), 1);
    }

    #[test]
    fn a_session_ended_again_keeps_its_newer_entry_when_the_old_one_is_let_go() {
        let mut seqs = Seqs::default();
        let a: Arc<str> = Arc::from("a");
        seqs.next(&a);
        seqs.end(&a);
        seqs.next(&a);
        seqs.end(&a);
        // The last of these lets `a`'s first end go; its second end is still kept.
        for i in 0..ENDED_KEPT - 1 {
            let n: Arc<str> = Arc::from(i.to_string());
            seqs.next(&n);
            seqs.end(&n);
        }
        assert_eq!(seqs.next(&a), 2);
    }

    #[test]
    fn only_so_many_ended_sessions_are_kept() {
        let mut seqs = Seqs::default();
        let names: Vec<Arc<str>> = (0..ENDED_KEPT + 10).map(|i| Arc::from(i.to_string())).collect();
        for n in &names {
            seqs.next(n);
            seqs.end(n);
        }
        assert_eq!(seqs.kept(), ENDED_KEPT);
        assert_eq!(seqs.next(&names[0]), 0, "the oldest were let go");
        assert_eq!(seqs.next(&names[ENDED_KEPT + 9]), 1, "the newest are kept");
    }
}
