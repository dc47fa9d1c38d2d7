//! What makes a retried namenode call recognisable (HDFS's `RetryCache`):
//! every client call carries the calling client's id and a call id, the
//! same on every retry of one call. A namenode that already applied the
//! call (its answer was lost with a connection, or the leader changed
//! before the client heard back) answers from its retry cache instead of
//! applying it twice.

use tonic::metadata::{MetadataMap, MetadataValue};

/// Metadata key of the calling client's id: random, one per client object.
pub const CLIENT_ID_METADATA: &str = "x-granary-client-id";

/// Metadata key of the call id: a counter per client, in decimal, the same
/// on every retry of one call.
pub const CALL_ID_METADATA: &str = "x-granary-call-id";

/// Which call of which client a request is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallKey {
    pub client_id: String,
    pub call_id: u64,
}

impl CallKey {
    /// The key a request carries, if it carries both parts (older clients
    /// and tools speaking the protocol themselves may send neither).
    pub fn from_metadata(md: &MetadataMap) -> Option<Self> {
        let client_id = md
            .get(CLIENT_ID_METADATA)?
            .to_str()
            .ok()
            .filter(|id| !id.is_empty())?;
        let call_id = md.get(CALL_ID_METADATA)?.to_str().ok()?.parse().ok()?;
        Some(Self {
            client_id: client_id.to_string(),
            call_id,
        })
    }

    /// Writes the key into outgoing request metadata. A client id that is
    /// not a valid header value is dropped rather than failing the call.
    pub fn apply(&self, md: &mut MetadataMap) {
        if let Ok(v) = MetadataValue::try_from(self.client_id.as_str()) {
            md.insert(CLIENT_ID_METADATA, v);
            md.insert(CALL_ID_METADATA, MetadataValue::from(self.call_id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_key_round_trips_through_metadata() {
        let key = CallKey {
            client_id: "3f0c2a9e-5b1d-4c8e-9a7f-0123456789ab".into(),
            call_id: 42,
        };
        let mut md = MetadataMap::new();
        key.apply(&mut md);
        assert_eq!(md.get(CALL_ID_METADATA).and_then(|v| v.to_str().ok()), Some("42"));
        assert_eq!(CallKey::from_metadata(&md), Some(key));
    }

    #[test]
    fn a_request_without_both_parts_has_no_key() {
        assert_eq!(CallKey::from_metadata(&MetadataMap::new()), None);
        let mut md = MetadataMap::new();
        md.insert(CLIENT_ID_METADATA, MetadataValue::from_static("c"));
        assert_eq!(CallKey::from_metadata(&md), None, "no call id");
        md.insert(CALL_ID_METADATA, MetadataValue::from_static("not a number"));
        assert_eq!(CallKey::from_metadata(&md), None);
        md.insert(CALL_ID_METADATA, MetadataValue::from_static("7"));
        assert_eq!(CallKey::from_metadata(&md).map(|k| k.call_id), Some(7));
    }
}
