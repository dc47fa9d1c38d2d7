//! Which groups a user is in, decided by the namenode, never by the caller
//! (HDFS's group mapping): a static mapping from the configuration for the
//! users it names (HDFS's `hadoop.user.group.static.mapping.overrides`),
//! else the user's groups in the namenode machine's OS (HDFS's default,
//! shell-based Unix mapping), cached for a while (HDFS: 300 s). A user the
//! OS does not know, and the mapping does not name, is in no group.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// `[groups]` in the namenode configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GroupsConfig {
    /// Users named here are in exactly these groups, whatever the OS says.
    pub static_mapping: BTreeMap<String, Vec<String>>,
    /// How long a user's OS groups are remembered (HDFS's
    /// `hadoop.security.groups.cache.secs`).
    pub cache_ms: u64,
}

impl Default for GroupsConfig {
    fn default() -> Self {
        Self {
            static_mapping: BTreeMap::new(),
            cache_ms: 300_000,
        }
    }
}

/// Users whose OS groups are remembered at once; beyond, the oldest go.
const MAX_CACHED_USERS: usize = 10_000;

type Lookup = Box<dyn Fn(&str) -> Vec<String> + Send + Sync>;

struct Cached {
    groups: Arc<[String]>,
    at: Instant,
}

/// Resolves users' groups (see the module).
pub struct GroupMapping {
    fixed: HashMap<String, Arc<[String]>>,
    ttl: Duration,
    lookup: Lookup,
    cache: Mutex<HashMap<String, Cached>>,
}

impl std::fmt::Debug for GroupMapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupMapping")
            .field("static_users", &self.fixed.len())
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl GroupMapping {
    pub fn new(cfg: &GroupsConfig) -> Self {
        Self::with_lookup(cfg, Box::new(os_groups))
    }

    fn with_lookup(cfg: &GroupsConfig, lookup: Lookup) -> Self {
        Self {
            fixed: cfg
                .static_mapping
                .iter()
                .map(|(u, g)| (u.clone(), g.clone().into()))
                .collect(),
            ttl: Duration::from_millis(cfg.cache_ms),
            lookup,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// `user`'s groups if known without asking the OS (static, or cached).
    pub fn known(&self, user: &str) -> Option<Arc<[String]>> {
        if let Some(g) = self.fixed.get(user) {
            return Some(g.clone());
        }
        self.cache
            .lock()
            .get(user)
            .filter(|c| c.at.elapsed() < self.ttl)
            .map(|c| c.groups.clone())
    }

    /// `user`'s groups, asking the OS when not known: may block (NSS can
    /// go to the network), so async callers try [`GroupMapping::known`]
    /// first and call this off the executor.
    pub fn groups(&self, user: &str) -> Arc<[String]> {
        if let Some(g) = self.known(user) {
            return g;
        }
        let groups: Arc<[String]> = (self.lookup)(user).into();
        let mut cache = self.cache.lock();
        if cache.len() >= MAX_CACHED_USERS && !cache.contains_key(user) {
            cache.retain(|_, c| c.at.elapsed() < self.ttl);
            if cache.len() >= MAX_CACHED_USERS
                && let Some(oldest) = cache.iter().min_by_key(|(_, c)| c.at).map(|(u, _)| u.clone())
            {
                cache.remove(&oldest);
            }
        }
        cache.insert(
            user.to_string(),
            Cached {
                groups: groups.clone(),
                at: Instant::now(),
            },
        );
        groups
    }
}

/// `user`'s groups on this machine, its primary group first (as `id -Gn`);
/// none for a user the OS does not know.
pub fn os_groups(user: &str) -> Vec<String> {
    use nix::unistd::{Group, User};
    let Ok(Some(u)) = User::from_name(user) else {
        return Vec::new();
    };
    let gids = std::ffi::CString::new(user)
        .ok()
        .and_then(|name| nix::unistd::getgrouplist(&name, u.gid).ok())
        .unwrap_or_default();
    let mut names: Vec<String> = Vec::new();
    for gid in std::iter::once(u.gid).chain(gids) {
        if let Ok(Some(g)) = Group::from_gid(gid)
            && !names.contains(&g.name)
        {
            names.push(g.name);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn counting(cfg: &GroupsConfig) -> (GroupMapping, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let m = GroupMapping::with_lookup(
            cfg,
            Box::new(move |u| {
                c.fetch_add(1, Ordering::SeqCst);
                vec![format!("{u}-os")]
            }),
        );
        (m, calls)
    }

    #[test]
    fn the_static_mapping_wins_and_os_answers_are_cached() {
        let cfg = GroupsConfig {
            static_mapping: [("carol".to_string(), vec!["supergroup".to_string()])].into(),
            cache_ms: 60_000,
        };
        let (m, calls) = counting(&cfg);
        assert_eq!(&*m.groups("carol"), ["supergroup".to_string()]);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        assert!(m.known("alice").is_none());
        assert_eq!(&*m.groups("alice"), ["alice-os".to_string()]);
        assert_eq!(&*m.groups("alice"), ["alice-os".to_string()]);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(m.known("alice").is_some());
    }

    #[test]
    fn cached_answers_expire_and_the_cache_stays_bounded() {
        let cfg = GroupsConfig {
            cache_ms: 0,
            ..Default::default()
        };
        let (m, calls) = counting(&cfg);
        m.groups("alice");
        m.groups("alice");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "an expired answer is asked again"
        );
        let cfg = GroupsConfig::default();
        let (m, _) = counting(&cfg);
        for i in 0..MAX_CACHED_USERS + 50 {
            m.groups(&format!("u{i}"));
        }
        assert_eq!(m.cache.lock().len(), MAX_CACHED_USERS);
        assert!(m.known(&format!("u{}", MAX_CACHED_USERS + 49)).is_some());
    }

    /// The OS answers for the user running the tests, with its primary
    /// group, and knows nothing of a made-up user.
    #[test]
    fn os_groups_come_from_the_os() {
        let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten()
            .expect("the test's own user");
        let primary = nix::unistd::Group::from_gid(me.gid)
            .ok()
            .flatten()
            .expect("its primary group");
        let got = os_groups(&me.name);
        assert_eq!(got.first(), Some(&primary.name), "{got:?}");
        assert!(os_groups("granary-no-such-user-7f3a").is_empty());
    }
}
