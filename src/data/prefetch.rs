//! Runs an iterator on a thread of its own, up to `ahead` items in front of
//! the consumer, so the consumer never waits while the producer keeps up.
//!
//! The items and their order are exactly the wrapped iterator's. Dropping the
//! consumer early stops the producer at its next item.

use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};

pub struct Prefetch<T> {
    rx: Option<Receiver<T>>,
    producer: Option<JoinHandle<()>>,
}

/// Starts producing `items` on a new thread; `ahead` (at least 1) is how many
/// finished items may wait for the consumer.
pub fn spawn<T: Send + 'static>(ahead: usize, items: impl Iterator<Item = T> + Send + 'static) -> Prefetch<T> {
    // The producer holds one finished item while it blocks on a full channel,
    // so a channel of `ahead − 1` keeps `ahead` items ready.
    let (tx, rx) = mpsc::sync_channel(ahead.max(1) - 1);
    let producer = thread::Builder::new()
        .name("kappa-prefetch".into())
        .spawn(move || {
            for item in items {
                if tx.send(item).is_err() {
                    // The consumer is gone.
                    return;
                }
            }
        })
        .expect("spawning a thread only fails when the OS is out of resources");
    Prefetch { rx: Some(rx), producer: Some(producer) }
}

impl<T> Iterator for Prefetch<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        let item = self.rx.as_ref()?.recv().ok();
        if item.is_none() {
            self.rx = None;
            // A producer that panicked must not look like a short epoch.
            if let Some(Err(panic)) = self.producer.take().map(JoinHandle::join) {
                std::panic::resume_unwind(panic);
            }
        }
        item
    }
}

impl<T> Drop for Prefetch<T> {
    fn drop(&mut self) {
        // Closing the channel first makes a blocked producer return.
        self.rx = None;
        if let Some(producer) = self.producer.take() {
            let _ = producer.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn yields_the_same_items_in_order() {
        for ahead in [1, 2, 5] {
            assert_eq!(spawn(ahead, 0..100).collect::<Vec<_>>(), (0..100).collect::<Vec<_>>());
        }
    }

    #[test]
    fn runs_at_most_ahead_items_in_front_and_stops_when_dropped() {
        let produced = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&produced);
        let mut it = spawn(
            2,
            (0..1000).inspect(move |_| {
                counter.fetch_add(1, Ordering::SeqCst);
            }),
        );
        assert_eq!(it.next(), Some(0));
        std::thread::sleep(Duration::from_millis(100));
        // One taken, two ready (one in the channel, one held by the blocked producer).
        assert_eq!(produced.load(Ordering::SeqCst), 3);
        drop(it);
        assert_eq!(produced.load(Ordering::SeqCst), 3);
    }

    #[test]
    #[should_panic(expected = "producer failed")]
    fn a_producer_panic_reaches_the_consumer() {
        let items = (0..3).map(|i| if i == 2 { panic!("producer failed") } else { i });
        let _ = spawn(1, items).count();
    }
}
