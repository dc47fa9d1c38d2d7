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
    syncing: bool,
}

#[derive(Default)]
pub struct GroupCommit {
    state: Mutex<State>,
    cv: Condvar,
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
            if !s.syncing {
                s.syncing = true;
                let target = s.written;
                drop(s);
                let res = sync();
                s = self.state.lock();
                s.syncing = false;
                if res.is_ok() {
                    s.synced = s.synced.max(target);
                }
                self.cv.notify_all();
                res?;
            } else {
                self.cv.wait(&mut s);
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
}
