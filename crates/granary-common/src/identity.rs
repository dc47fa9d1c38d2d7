//! Who is calling: simple (trusted) authentication as in HDFS's `simple`
//! mode. The user and groups travel in request metadata.

pub const USER_METADATA: &str = "x-granary-user";
pub const GROUPS_METADATA: &str = "x-granary-groups";
/// The user of calls that name none.
pub const ANONYMOUS: &str = "nobody";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

impl Identity {
    pub fn new(user: impl Into<String>, groups: Vec<String>) -> Self {
        Self {
            user: user.into(),
            groups,
        }
    }

    /// Reads the identity from request metadata.
    pub fn from_metadata(md: &tonic::metadata::MetadataMap) -> Self {
        let user = md
            .get(USER_METADATA)
            .and_then(|v| v.to_str().ok())
            .filter(|u| !u.is_empty())
            .unwrap_or(ANONYMOUS)
            .to_string();
        let groups = md
            .get(GROUPS_METADATA)
            .and_then(|v| v.to_str().ok())
            .map(|g| {
                g.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        Self { user, groups }
    }

    /// Writes the identity into outgoing request metadata. Names that are not
    /// valid header values are dropped rather than failing the call.
    pub fn apply(&self, md: &mut tonic::metadata::MetadataMap) {
        if let Ok(v) = self.user.parse() {
            md.insert(USER_METADATA, v);
        }
        if !self.groups.is_empty()
            && let Ok(v) = self.groups.join(",").parse()
        {
            md.insert(GROUPS_METADATA, v);
        }
    }

    /// The OS user running this process (the namenode's superuser).
    pub fn current_os_user() -> String {
        nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten()
            .map(|u| u.name)
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "root".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_round_trips_through_metadata() {
        let id = Identity::new("alice", vec!["eng".into(), "ops".into()]);
        let mut md = tonic::metadata::MetadataMap::new();
        id.apply(&mut md);
        assert_eq!(Identity::from_metadata(&md), id);
        assert_eq!(
            Identity::from_metadata(&tonic::metadata::MetadataMap::new()).user,
            ANONYMOUS
        );
    }
}
