//! Who a client's namenode calls say they come from: the user, the
//! delegation token that proves it (if any), and the user it acts for
//! (HDFS's doas, if any).

use std::sync::Arc;

use granary_common::identity::{DOAS_METADATA, Identity, TOKEN_METADATA};

#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) identity: Identity,
    /// A delegation token every call carries: the namenode takes its owner
    /// as the user.
    pub(crate) token: Option<Arc<str>>,
    /// The user to act for; the namenode allows it for proxy users only.
    pub(crate) doas: Option<Arc<str>>,
}

impl Caller {
    /// Puts who calls into a call's metadata.
    pub(crate) fn apply(&self, md: &mut tonic::metadata::MetadataMap) {
        self.identity.apply(md);
        if let Some(v) = self
            .token
            .as_deref()
            .and_then(|t| format!("Bearer {t}").parse().ok())
        {
            md.insert(TOKEN_METADATA, v);
        }
        if let Some(v) = self.doas.as_deref().and_then(|d| d.parse().ok()) {
            md.insert(DOAS_METADATA, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_says_who_it_is_and_for_whom() {
        let c = Caller {
            identity: Identity::new("alice"),
            token: Some(Arc::from("abc")),
            doas: Some(Arc::from("bob")),
        };
        let mut md = tonic::metadata::MetadataMap::new();
        c.apply(&mut md);
        assert_eq!(Identity::from_metadata(&md).user, "alice");
        assert_eq!(granary_common::identity::bearer(&md), Some("abc"));
        assert_eq!(md.get(DOAS_METADATA).unwrap(), "bob");
        let plain = Caller {
            identity: Identity::new("alice"),
            token: None,
            doas: None,
        };
        let mut md = tonic::metadata::MetadataMap::new();
        plain.apply(&mut md);
        assert!(md.get(TOKEN_METADATA).is_none() && md.get(DOAS_METADATA).is_none());
    }
}
