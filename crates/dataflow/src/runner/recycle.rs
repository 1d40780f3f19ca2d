//! Vectors handed back for reuse across threads.
//!
//! An epoch's events are gathered on the feeding thread and dropped on a worker's, and its
//! points the other way round. Left to the allocator, every such vector is a fresh
//! allocation of fresh pages on one thread and a free on another: the pages are given
//! back to the system and faulted in anew an epoch later, and first touches of memory were
//! a tenth of replay's CPU. Sent back emptied, the same few vectors carry every epoch.

use crossbeam_channel::{bounded, Receiver, Sender};

/// A bounded pool of emptied vectors: what does not fit is dropped, so it holds at most
/// `keep` vectors however the two sides run.
#[derive(Debug)]
pub struct Recycle<T> {
    tx: Sender<Vec<T>>,
    rx: Receiver<Vec<T>>,
}

impl<T> Clone for Recycle<T> {
    fn clone(&self) -> Self {
        Recycle {
            tx: self.tx.clone(),
            rx: self.rx.clone(),
        }
    }
}

impl<T> Recycle<T> {
    /// A pool holding at most `keep` vectors.
    pub fn new(keep: usize) -> Self {
        let (tx, rx) = bounded(keep.max(1));
        Recycle { tx, rx }
    }

    /// An empty vector with room for at least `room` elements: one given back if there
    /// is one, else a new one.
    pub fn take(&self, room: usize) -> Vec<T> {
        match self.rx.try_recv() {
            Ok(mut v) => {
                v.reserve(room);
                v
            }
            Err(_) => Vec::with_capacity(room),
        }
    }

    /// Gives `v` back, emptied (its elements are dropped here).
    pub fn give(&self, mut v: Vec<T>) {
        v.clear();
        if v.capacity() > 0 {
            let _ = self.tx.try_send(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vector_given_back_is_taken_again_empty_with_its_room() {
        let pool = Recycle::new(1);
        let mut v = pool.take(100);
        v.extend(0..100u32);
        let at = v.as_ptr();
        pool.give(v);
        let again = pool.take(10);
        assert!(again.is_empty());
        assert_eq!(again.as_ptr(), at, "the same allocation");
        assert!(again.capacity() >= 100);
        // Full: the second vector is dropped, the pool keeps one.
        pool.give(again);
        pool.give(Vec::with_capacity(5));
        let first = pool.take(0);
        assert_eq!(first.as_ptr(), at);
        assert_eq!(pool.take(0).capacity(), 0, "nothing more was kept");
    }
}
