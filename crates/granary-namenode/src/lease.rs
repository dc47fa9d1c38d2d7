//! Leases: a writer holds one on each file it has open and renews it. Until
//! the soft limit passes, no other client may take the file over; after the
//! hard limit the namenode recovers the file by itself (closes it at a
//! consistent length).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

struct Lease {
    renewed: Instant,
    files: HashSet<u64>,
}

pub struct LeaseManager {
    soft: Duration,
    hard: Duration,
    leases: Mutex<HashMap<String, Lease>>,
}

impl LeaseManager {
    pub fn new(soft: Duration, hard: Duration) -> Self {
        Self {
            soft,
            hard,
            leases: Mutex::new(HashMap::new()),
        }
    }

    pub fn soft_limit(&self) -> Duration {
        self.soft
    }

    /// `client` now writes file `inode` (its lease counts from now).
    pub fn add(&self, client: &str, inode: u64) {
        let mut m = self.leases.lock();
        let l = m.entry(client.to_string()).or_insert_with(|| Lease {
            renewed: Instant::now(),
            files: HashSet::new(),
        });
        l.renewed = Instant::now();
        l.files.insert(inode);
    }

    /// The file was closed or recovered.
    pub fn remove(&self, client: &str, inode: u64) {
        let mut m = self.leases.lock();
        if let Some(l) = m.get_mut(client) {
            l.files.remove(&inode);
            if l.files.is_empty() {
                m.remove(client);
            }
        }
    }

    pub fn renew(&self, client: &str) {
        if let Some(l) = self.leases.lock().get_mut(client) {
            l.renewed = Instant::now();
        }
    }

    /// Time since `client` last renewed, or None if it holds no lease here.
    pub fn age(&self, client: &str) -> Option<Duration> {
        self.leases.lock().get(client).map(|l| l.renewed.elapsed())
    }

    /// Whether `client` renewed within the soft limit.
    pub fn is_fresh(&self, client: &str) -> bool {
        self.age(client).is_some_and(|a| a < self.soft)
    }

    /// Files of clients silent past the hard limit.
    pub fn expired(&self) -> Vec<(String, Vec<u64>)> {
        self.leases
            .lock()
            .iter()
            .filter(|(_, l)| l.renewed.elapsed() >= self.hard)
            .map(|(c, l)| (c.clone(), l.files.iter().copied().collect()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_and_hard_limits() {
        let lm = LeaseManager::new(Duration::from_millis(30), Duration::from_millis(80));
        lm.add("c1", 7);
        assert!(lm.is_fresh("c1"));
        std::thread::sleep(Duration::from_millis(40));
        assert!(!lm.is_fresh("c1"));
        lm.renew("c1");
        assert!(lm.is_fresh("c1"));
        std::thread::sleep(Duration::from_millis(90));
        assert_eq!(lm.expired(), vec![("c1".to_string(), vec![7])]);
        lm.remove("c1", 7);
        assert!(lm.expired().is_empty());
        assert_eq!(lm.age("c1"), None);
    }
}
