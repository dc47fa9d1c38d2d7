//! How daemons prove they belong to the cluster: a shared cluster secret (a
//! file the namenode's `format` writes and operators copy to datanodes).
//! A datanode registers with a [`DaemonProof`](granary_proto::DaemonProof)
//! (HMAC-SHA256 keyed with the secret over its identity, a timestamp and a
//! nonce); the namenode answers with a session that every later call
//! carries in [`SESSION_METADATA`].

use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use granary_proto as pb;

pub type HmacSha256 = Hmac<Sha256>;

/// Metadata key carrying a datanode's session on DatanodeProtocol calls.
pub const SESSION_METADATA: &str = "x-granary-datanode-session";
/// A proof older or newer than this (by the namenode's clock) is refused.
pub const MAX_CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;
/// Shortest secret accepted (characters of the file, whitespace trimmed).
pub const MIN_SECRET_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cluster secret file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cluster secret file {path} holds {len} characters; at least {MIN_SECRET_LEN} are needed")]
    TooShort { path: PathBuf, len: usize },
}

/// The cluster secret. Never printed.
#[derive(Clone)]
pub struct ClusterSecret(Vec<u8>);

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

impl ClusterSecret {
    /// Reads a secret file (surrounding whitespace is ignored).
    pub fn load(path: &Path) -> Result<Self, SecretError> {
        let io = |source| SecretError::Io {
            path: path.to_path_buf(),
            source,
        };
        let text = std::fs::read(path).map_err(io)?;
        let trimmed = text.trim_ascii();
        if trimmed.len() < MIN_SECRET_LEN {
            return Err(SecretError::TooShort {
                path: path.to_path_buf(),
                len: trimmed.len(),
            });
        }
        Ok(Self(trimmed.to_vec()))
    }

    /// Writes a new random secret to `path` (which must not exist), readable
    /// by its owner only.
    pub fn generate(path: &Path) -> Result<Self, SecretError> {
        use std::os::unix::fs::OpenOptionsExt;
        let io = |source| SecretError::Io {
            path: path.to_path_buf(),
            source,
        };
        let secret = hex(&crate::block_token::new_key());
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        f.write_all(secret.as_bytes())
            .and_then(|()| f.write_all(b"\n"))
            .map_err(io)?;
        f.sync_all().map_err(io)?;
        Ok(Self(secret.into_bytes()))
    }

    /// A secret given directly (tests, in-process clusters).
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    pub fn mac(&self) -> HmacSha256 {
        <HmacSha256 as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("hmac takes any key length"))
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a registration proof covers, in order.
fn proof_message(
    cluster_id: &str,
    id: &pb::DatanodeId,
    node_key: &[u8],
    timestamp_ms: i64,
    nonce: &[u8],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(256);
    let node_key_hash = Sha256::digest(node_key);
    let ts = timestamp_ms.to_be_bytes();
    let fields: [&[u8]; 10] = [
        b"granary-register-v1",
        cluster_id.as_bytes(),
        id.uuid.as_bytes(),
        id.hostname.as_bytes(),
        id.rpc_addr.as_bytes(),
        id.http_addr.as_bytes(),
        id.rack.as_bytes(),
        &node_key_hash,
        &ts,
        nonce,
    ];
    // Length-prefixed, so no two field lists encode alike.
    for f in fields {
        m.extend_from_slice(&(f.len() as u32).to_be_bytes());
        m.extend_from_slice(f);
    }
    m
}

/// A proof that the registering datanode holds `secret`.
pub fn prove(
    secret: &ClusterSecret,
    cluster_id: &str,
    id: &pb::DatanodeId,
    node_key: &[u8],
    now_ms: i64,
) -> pb::DaemonProof {
    use rand::RngCore;
    let mut nonce = vec![0u8; 16];
    rand::thread_rng().fill_bytes(&mut nonce);
    let mut m = secret.mac();
    m.update(&proof_message(cluster_id, id, node_key, now_ms, &nonce));
    pb::DaemonProof {
        timestamp_ms: now_ms,
        nonce,
        mac: m.finalize().into_bytes().to_vec(),
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProofError {
    #[error(
        "registration carries no proof of the cluster secret (is the datanode's cluster_secret_file set?)"
    )]
    Missing,
    #[error("registration proof does not match this cluster's secret")]
    BadMac,
    #[error(
        "registration proof is {skew_ms} ms away from the namenode's clock (limit {MAX_CLOCK_SKEW_MS} ms); check the clocks"
    )]
    Skew { skew_ms: i64 },
    #[error("registration proof has a malformed nonce")]
    BadNonce,
}

/// Checks a registration proof's MAC and clock; the caller still has to
/// refuse a nonce it has seen.
pub fn verify(
    secret: &ClusterSecret,
    cluster_id: &str,
    id: &pb::DatanodeId,
    node_key: &[u8],
    proof: Option<&pb::DaemonProof>,
    now_ms: i64,
) -> Result<(), ProofError> {
    let p = proof.ok_or(ProofError::Missing)?;
    if p.nonce.len() != 16 {
        return Err(ProofError::BadNonce);
    }
    let mut m = secret.mac();
    m.update(&proof_message(cluster_id, id, node_key, p.timestamp_ms, &p.nonce));
    m.verify_slice(&p.mac).map_err(|_| ProofError::BadMac)?;
    let skew_ms = p.timestamp_ms.saturating_sub(now_ms).saturating_abs();
    if skew_ms > MAX_CLOCK_SKEW_MS {
        return Err(ProofError::Skew { skew_ms });
    }
    Ok(())
}

/// The fingerprint of a node key the namenode keeps (never the key itself).
pub fn node_key_fingerprint(node_key: &[u8]) -> Vec<u8> {
    Sha256::digest(node_key).to_vec()
}

/// gRPC paths a datanode may call without a session.
fn open_path(path: &str) -> bool {
    matches!(
        path,
        "/granary.v1.DatanodeProtocol/Version" | "/granary.v1.DatanodeProtocol/Register"
    )
}

fn needs_session(path: &str) -> bool {
    path.starts_with("/granary.v1.DatanodeProtocol/") || path.starts_with("/granary.v1.BlockReportProtocol/")
}

/// Where the namenode keeps datanodes' sessions.
pub trait SessionLookup: Send + Sync + 'static {
    /// The datanode a session was given to, if it is live.
    fn datanode_of(&self, session: &str) -> Option<String>;
}

/// The datanode a call came from, put in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatanodeSession {
    pub uuid: String,
}

/// Tower layer on the namenode's gRPC server: refuses DatanodeProtocol and
/// BlockReportProtocol calls (but Version and Register) without a live
/// session before their body is read, and names the caller's datanode in
/// the request's extensions ([`DatanodeSession`]).
pub struct DatanodeAuthLayer<L>(pub std::sync::Arc<L>);

impl<L> Clone for DatanodeAuthLayer<L> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<S, L> tower::Layer<S> for DatanodeAuthLayer<L> {
    type Service = DatanodeAuth<S, L>;
    fn layer(&self, inner: S) -> Self::Service {
        DatanodeAuth {
            inner,
            sessions: self.0.clone(),
        }
    }
}

pub struct DatanodeAuth<S, L> {
    inner: S,
    sessions: std::sync::Arc<L>,
}

impl<S: Clone, L> Clone for DatanodeAuth<S, L> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            sessions: self.sessions.clone(),
        }
    }
}

impl<S, B, RB, L> tower::Service<http::Request<B>> for DatanodeAuth<S, L>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    RB: Default,
    L: SessionLookup,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::Either<S::Future, futures::future::Ready<Result<S::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let path = req.uri().path();
        use futures::future::Either;
        if !needs_session(path) || open_path(path) {
            return Either::Left(self.inner.call(req));
        }
        let uuid = req
            .headers()
            .get(SESSION_METADATA)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| self.sessions.datanode_of(s));
        match uuid {
            Some(uuid) => {
                req.extensions_mut().insert(DatanodeSession { uuid });
                Either::Left(self.inner.call(req))
            }
            None => {
                let st = crate::error::status(
                    crate::ErrorCode::Unauthenticated,
                    "datanode call without a valid session: register first",
                );
                Either::Right(futures::future::ready(Ok(st.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_datanode_calls_but_version_and_register_need_a_session() {
        assert!(!needs_session("/granary.v1.ClientProtocol/Create"));
        assert!(needs_session("/granary.v1.BlockReportProtocol/BlockReport"));
        assert!(needs_session("/granary.v1.DatanodeProtocol/Heartbeat"));
        assert!(open_path("/granary.v1.DatanodeProtocol/Register"));
        assert!(open_path("/granary.v1.DatanodeProtocol/Version"));
    }

    fn id() -> pb::DatanodeId {
        pb::DatanodeId {
            uuid: "u1".into(),
            hostname: "h".into(),
            rpc_addr: "127.0.0.1:9866".into(),
            http_addr: "127.0.0.1:9864".into(),
            rack: "/r".into(),
        }
    }

    #[test]
    fn proofs_hold_only_for_the_same_secret_identity_and_time() {
        let s = ClusterSecret::from_bytes(vec![7u8; 32]);
        let p = prove(&s, "CID", &id(), b"key", 1_000_000);
        assert_eq!(verify(&s, "CID", &id(), b"key", Some(&p), 1_000_000), Ok(()));
        let other = ClusterSecret::from_bytes(vec![8u8; 32]);
        assert_eq!(
            verify(&other, "CID", &id(), b"key", Some(&p), 1_000_000),
            Err(ProofError::BadMac)
        );
        assert_eq!(
            verify(&s, "CID2", &id(), b"key", Some(&p), 1_000_000),
            Err(ProofError::BadMac)
        );
        let mut moved = id();
        moved.http_addr = "10.0.0.9:9864".into();
        assert_eq!(
            verify(&s, "CID", &moved, b"key", Some(&p), 1_000_000),
            Err(ProofError::BadMac)
        );
        assert_eq!(
            verify(&s, "CID", &id(), b"other", Some(&p), 1_000_000),
            Err(ProofError::BadMac)
        );
        assert!(matches!(
            verify(
                &s,
                "CID",
                &id(),
                b"key",
                Some(&p),
                1_000_000 + MAX_CLOCK_SKEW_MS + 1
            ),
            Err(ProofError::Skew { .. })
        ));
        assert_eq!(
            verify(&s, "CID", &id(), b"key", None, 0),
            Err(ProofError::Missing)
        );
    }

    #[test]
    fn secret_files_are_private_and_not_too_short() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("sub/cluster-secret");
        ClusterSecret::generate(&p).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(ClusterSecret::load(&p).is_ok());
        assert!(
            ClusterSecret::generate(&p).is_err(),
            "an existing secret is never replaced"
        );
        let short = tmp.path().join("short");
        std::fs::write(&short, "abc\n").unwrap();
        let e = ClusterSecret::load(&short).unwrap_err().to_string();
        assert!(e.contains("at least 32"), "{e}");
    }
}
