//! Who is calling: simple (trusted) authentication as in HDFS's `simple`
//! mode. The user travels in request metadata; the namenode decides which
//! groups that user is in (its group mapping), so a caller cannot claim one.

pub const USER_METADATA: &str = "x-granary-user";
/// Where a call carries a delegation token: `authorization: Bearer TOKEN`.
pub const TOKEN_METADATA: &str = "authorization";
/// The user a proxy user's call acts for (HDFS's doas).
pub const DOAS_METADATA: &str = "x-granary-doas";

/// The delegation token a call carries, if any.
pub fn bearer(md: &tonic::metadata::MetadataMap) -> Option<&str> {
    md.get(TOKEN_METADATA)?.to_str().ok()?.strip_prefix("Bearer ")
}
/// The user of calls that name none.
pub const ANONYMOUS: &str = "nobody";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
}

impl Identity {
    pub fn new(user: impl Into<String>) -> Self {
        Self { user: user.into() }
    }

    /// Reads the identity from request metadata. Anything else a caller
    /// sends about itself (such as groups) is not read.
    pub fn from_metadata(md: &tonic::metadata::MetadataMap) -> Self {
        let user = md
            .get(USER_METADATA)
            .and_then(|v| v.to_str().ok())
            .filter(|u| !u.is_empty())
            .unwrap_or(ANONYMOUS)
            .to_string();
        Self { user }
    }

    /// Writes the identity into outgoing request metadata. A name that is
    /// not a valid header value is dropped rather than failing the call.
    pub fn apply(&self, md: &mut tonic::metadata::MetadataMap) {
        if let Ok(v) = self.user.parse() {
            md.insert(USER_METADATA, v);
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
        let id = Identity::new("alice");
        let mut md = tonic::metadata::MetadataMap::new();
        id.apply(&mut md);
        assert_eq!(md.len(), 1, "only the user is sent");
        assert_eq!(Identity::from_metadata(&md), id);
        assert_eq!(
            Identity::from_metadata(&tonic::metadata::MetadataMap::new()).user,
            ANONYMOUS
        );
    }
}
