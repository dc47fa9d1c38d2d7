//! Group commit: mutations are written to RocksDB's WAL under the namespace
//! lock without fsync, then each caller waits, outside the lock, until one
//! fsync covers its write. Concurrent writers share fsyncs, so throughput
//! grows with concurrency instead of being capped at one fsync per op
//! (the same split as HDFS's logEdit / logSync).

use parking_lot::{Condvar, Mutex};

#[derive(Default)]
struct State {
    written: u64,
    synced: u64,
    /// The write the sync in progress covers up to, if one is running.
    syncing: Option<u64>,
    /// Syncs started so far; its parity picks the waiters' condition variable.
    round: u64,
}

/// Waiters are split by the sync that will cover them: those covered by the
/// sync in progress wait on `cv[round % 2]`, the rest on the other one. A
/// finished sync then wakes only writers that are now durable, plus one
/// writer to lead the next sync, instead of every waiter.
#[derive(Default)]
pub struct GroupCommit {
    state: Mutex<State>,
    cv: [Condvar; 2],
}

impl GroupCommit {
    /// Records one more write; call under the lock that orders writes.
    pub fn note_write(&self) -> u64 {
        let mut s = self.state.lock();
        s.written += 1;
        s.written
    }

    /// Blocks until write `seq` is durable, running `sync` as the group leader
    /// when no other caller is already syncing.
    pub fn wait_durable<E>(&self, seq: u64, sync: impl Fn() -> Result<(), E>) -> Result<(), E> {
        let mut s = self.state.lock();
        loop {
            if s.synced >= seq {
                return Ok(());
            }
            match s.syncing {
                None => {
                    let target = s.written;
                    s.syncing = Some(target);
                    s.round += 1;
                    let round = s.round;
                    drop(s);
                    let res = sync();
                    s = self.state.lock();
                    s.syncing = None;
                    if res.is_ok() {
                        s.synced = s.synced.max(target);
                        self.cv[(round % 2) as usize].notify_all();
                        // Writes that came in during the sync need a leader.
                        if s.written > s.synced {
                            self.cv[((round + 1) % 2) as usize].notify_one();
                        }
                    } else {
                        // Everyone retries; one of them leads the next attempt.
                        self.cv.iter().for_each(|cv| {
                            cv.notify_all();
                        });
                    }
                    res?;
                }
                Some(target) => {
                    let round = if seq <= target { s.round } else { s.round + 1 };
                    self.cv[(round % 2) as usize].wait(&mut s);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn concurrent_writers_share_syncs_and_all_become_durable() {
        let gc = Arc::new(GroupCommit::default());
        let syncs = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let gc = gc.clone();
                let syncs = syncs.clone();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        let seq = gc.note_write();
                        gc.wait_durable::<()>(seq, || {
                            syncs.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_micros(200));
                            Ok(())
                        })
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = gc.state.lock();
        assert_eq!(s.synced, 1600);
        assert!(syncs.load(Ordering::SeqCst) <= 1600);
    }

    #[test]
    fn a_failed_sync_is_reported_and_not_counted_durable() {
        let gc = GroupCommit::default();
        let seq = gc.note_write();
        assert_eq!(gc.wait_durable(seq, || Err("disk gone")), Err("disk gone"));
        assert_eq!(gc.wait_durable::<&str>(seq, || Ok(())), Ok(()));
    }

    /// A write made while a sync runs is not covered by it: its writer is
    /// woken when that sync ends and leads the next one.
    #[test]
    fn a_write_made_during_a_sync_is_synced_by_the_next_one() {
        let gc = Arc::new(GroupCommit::default());
        let first = gc.note_write();
        let (running, started) = std::sync::mpsc::channel();
        let later = {
            let gc = gc.clone();
            std::thread::spawn(move || {
                started.recv().expect("first sync started");
                let seq = gc.note_write();
                let own_syncs = AtomicU64::new(0);
                gc.wait_durable::<()>(seq, || {
                    own_syncs.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
                .expect("durable");
                own_syncs.load(Ordering::SeqCst)
            })
        };
        gc.wait_durable::<()>(first, || {
            running.send(()).expect("signal");
            std::thread::sleep(std::time::Duration::from_millis(100));
            Ok(())
        })
        .expect("durable");
        assert_eq!(later.join().expect("later writer"), 1);
        assert_eq!(gc.state.lock().synced, 2);
    }
}
