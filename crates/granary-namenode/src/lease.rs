//! Leases: a writer holds one on each file it has open and renews it. Until
//! the soft limit passes, no other client may take the file over; after the
//! hard limit the namenode recovers the file by itself (closes it at a
//! consistent length). A lease (a client name) belongs to the user whose
//! client took it: no other user may renew it or add files to it.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::error::{NnError, Result};
use crate::permission::Caller;

/// `[leases]` of the namenode configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LeaseConfig {
    /// Until a writer's lease is this old, no other client can take its file (HDFS: 60 s).
    pub soft_limit_ms: u64,
    /// After this long without renewal the namenode recovers the file itself (HDFS: 20 min).
    pub hard_limit_ms: u64,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            soft_limit_ms: 60_000,
            hard_limit_ms: 20 * 60 * 1000,
        }
    }
}

struct Lease {
    /// The user whose client holds the lease.
    user: String,
    renewed: Instant,
    files: HashSet<u64>,
}

pub struct LeaseManager {
    soft: Duration,
    hard: Duration,
    leases: Mutex<HashMap<String, Lease>>,
}

impl LeaseManager {
    pub fn from_config(cfg: &LeaseConfig) -> Self {
        Self::new(
            Duration::from_millis(cfg.soft_limit_ms),
            Duration::from_millis(cfg.hard_limit_ms),
        )
    }

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

    /// Fails unless `caller` may act as lease holder `client`: nobody holds
    /// that name yet, or its holder is the caller's user (or the caller is
    /// the superuser).
    pub fn check_holder(&self, client: &str, caller: &Caller) -> Result<()> {
        match self.leases.lock().get(client) {
            Some(l) if !caller.acts_as(&l.user) => Err(NnError::NotLeaseOwner {
                user: caller.user().to_string(),
                client: client.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// `client`, a client of `user`, now writes file `inode` (its lease
    /// counts from now). A lease keeps the user it was first taken by.
    pub fn add(&self, client: &str, user: &str, inode: u64) {
        let mut m = self.leases.lock();
        let l = m.entry(client.to_string()).or_insert_with(|| Lease {
            user: user.to_string(),
            renewed: Instant::now(),
            files: HashSet::new(),
        });
        if l.user != user {
            // Only the superuser gets here (check_holder), or two records
            // of one client under different users at start.
            tracing::warn!(client, holder_user = %l.user, user, inode, "file added to a lease of another user");
        }
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

    /// Renews `client`'s lease for `caller`, which must be its user or the
    /// superuser. Renewing a name that holds no lease does nothing.
    pub fn renew(&self, client: &str, caller: &Caller) -> Result<()> {
        if let Some(l) = self.leases.lock().get_mut(client) {
            if !caller.acts_as(&l.user) {
                return Err(NnError::NotLeaseOwner {
                    user: caller.user().to_string(),
                    client: client.to_string(),
                });
            }
            l.renewed = Instant::now();
        }
        Ok(())
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

    fn caller(user: &str) -> Caller {
        Caller::new(user, vec![], "hdfs", "supergroup")
    }

    #[test]
    fn soft_and_hard_limits() {
        let lm = LeaseManager::new(Duration::from_millis(30), Duration::from_millis(80));
        lm.add("c1", "alice", 7);
        assert!(lm.is_fresh("c1"));
        std::thread::sleep(Duration::from_millis(40));
        assert!(!lm.is_fresh("c1"));
        lm.renew("c1", &caller("alice")).expect("renew");
        assert!(lm.is_fresh("c1"));
        std::thread::sleep(Duration::from_millis(90));
        assert_eq!(lm.expired(), vec![("c1".to_string(), vec![7])]);
        lm.remove("c1", 7);
        assert!(lm.expired().is_empty());
        assert_eq!(lm.age("c1"), None);
    }

    /// A lease is its user's: another user can neither renew it nor write
    /// under its name; the superuser can.
    #[test]
    fn a_lease_belongs_to_the_user_who_took_it() {
        let lm = LeaseManager::new(Duration::from_millis(30), Duration::from_secs(60));
        lm.add("alice-client", "alice", 7);
        std::thread::sleep(Duration::from_millis(40));
        let e = lm.renew("alice-client", &caller("bob")).unwrap_err();
        assert!(matches!(e, NnError::NotLeaseOwner { .. }), "{e}");
        assert!(
            !lm.is_fresh("alice-client"),
            "bob's renewal kept alice's lease alive"
        );
        assert!(lm.check_holder("alice-client", &caller("bob")).is_err());
        lm.renew("alice-client", &caller("alice")).expect("her own");
        assert!(lm.is_fresh("alice-client"));
        lm.renew("alice-client", &caller("hdfs")).expect("the superuser");
        lm.check_holder("alice-client", &caller("alice")).expect("hers");
        lm.check_holder("new-client", &caller("bob"))
            .expect("a free name");
        lm.renew("nobody-holds-this", &caller("bob"))
            .expect("no lease, nothing to do");
    }
}
