//! TLS for Granary's connections (rustls with the `ring` provider): this
//! process's certificate and key, the cluster CA every peer's certificate
//! must chain to, and who a certificate names.
//!
//! A Granary certificate names its holder with one URI subject alternative
//! name, `granary://ROLE/NAME`: `granary://namenode/nn1`,
//! `granary://datanode/<uuid>`, `granary://user/alice`. Only that name is
//! trusted, never the common name, and only in a certificate the cluster CA
//! signed. `granary admin certs init` writes a CA and such certificates
//! ([`issue`], behind the `certs` feature).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::error::{ErrorCode, HasErrorCode};

mod context;
#[cfg(feature = "daemon")]
pub mod http_auth;
#[cfg(feature = "certs")]
pub mod issue;
#[cfg(feature = "daemon")]
mod listen;
#[cfg(feature = "daemon")]
mod users;

pub use context::{ALPN_DATA, ALPN_H2, ALPN_HTTP1, Dial, Port, Tls};
#[cfg(feature = "daemon")]
pub use listen::{Conn, ConnInfo, ConnListener, incoming, listen, reload_on_sighup};
#[cfg(feature = "daemon")]
pub use users::{UserMap, UserRule};

/// How every certificate's holder name starts.
pub const URI_PREFIX: &str = "granary://";

/// The longest name a certificate may give its holder (a user name, a
/// datanode uuid, a namenode's node id).
pub const MAX_NAME: usize = 255;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: no PEM certificate in it", .0.display())]
    NoCertificate(PathBuf),
    #[error("{}: no PEM private key in it", .0.display())]
    NoKey(PathBuf),
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error("TLS settings: {0}")]
    Config(String),
    #[error("the certificate names no granary identity (a URI {URI_PREFIX}ROLE/NAME)")]
    NoIdentity,
}

impl HasErrorCode for TlsError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::NoIdentity => ErrorCode::Unauthenticated,
            _ => ErrorCode::InvalidArgument,
        }
    }
}

/// What a certificate's holder is to the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Namenode,
    Datanode,
    User,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Namenode => "namenode",
            Self::Datanode => "datanode",
            Self::User => "user",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "namenode" => Some(Self::Namenode),
            "datanode" => Some(Self::Datanode),
            "user" => Some(Self::User),
            _ => None,
        }
    }
}

/// Who a certificate names: a role and a name within it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Peer {
    pub role: Role,
    pub name: String,
}

impl Peer {
    /// Fails on a name no certificate may carry (empty, too long, or with a
    /// `/`, whitespace or control characters).
    pub fn new(role: Role, name: &str) -> Result<Self, TlsError> {
        if name.is_empty()
            || name.len() > MAX_NAME
            || name
                .chars()
                .any(|c| c == '/' || c.is_whitespace() || c.is_control())
        {
            return Err(TlsError::Config(format!(
                "{name:?} cannot name a {}: 1 to {MAX_NAME} bytes, no '/', spaces or control characters",
                role.as_str()
            )));
        }
        Ok(Self {
            role,
            name: name.to_string(),
        })
    }

    /// `granary://ROLE/NAME`.
    pub fn uri(&self) -> String {
        format!("{URI_PREFIX}{}/{}", self.role.as_str(), self.name)
    }

    /// The peer a `granary://ROLE/NAME` URI names, if it is one.
    pub fn from_uri(uri: &str) -> Option<Self> {
        let (role, name) = uri.strip_prefix(URI_PREFIX)?.split_once('/')?;
        Self::new(Role::parse(role)?, name).ok()
    }

    /// The holder an end-entity certificate names (its granary URI). The
    /// certificate must already have been verified against the cluster CA:
    /// this only reads it.
    pub fn of_certificate(cert: &CertificateDer<'_>) -> Result<Self, TlsError> {
        let ee = webpki::EndEntityCert::try_from(cert).map_err(|_| TlsError::NoIdentity)?;
        let mut found = ee.valid_uri_names().filter_map(Self::from_uri);
        match (found.next(), found.next()) {
            (Some(peer), None) => Ok(peer),
            // None, or two names: which one would it be?
            _ => Err(TlsError::NoIdentity),
        }
    }
}

/// Where this process's certificate, its key and the cluster CA are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// Whether a server asks its clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Every client proves itself with a certificate of the cluster CA.
    Required,
    /// A client may (HTTP ports, where tokens and `/healthz` come without one).
    Optional,
}

/// The loaded files: everything a TLS server or client of this process is
/// built from.
pub struct Material {
    roots: Arc<RootCertStore>,
    own: Option<Own>,
}

/// This process's certificate chain, its key, and who the certificate names.
struct Own {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    identity: Peer,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Invalid {
            path: path.to_path_buf(),
            reason: format!("not a PEM certificate: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
    }
    Ok(certs)
}

/// The provider every config is built with (one crypto library in the
/// build, and no process-wide default to install first).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Material {
    /// A daemon's files: its certificate, its key and the cluster CA, all three.
    pub fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        for (what, path) in [("tls.cert", &files.cert), ("tls.key", &files.key)] {
            if path.as_os_str().is_empty() {
                return Err(TlsError::Config(format!(
                    "{what} is not set: TLS needs a certificate, its key and the cluster CA"
                )));
            }
        }
        Self::load_client(files)
    }

    /// A client's files: the cluster CA, and a certificate with its key when
    /// the client proves who it is with one (both or neither).
    pub fn load_client(files: &TlsFiles) -> Result<Self, TlsError> {
        if files.ca.as_os_str().is_empty() {
            return Err(TlsError::Config(
                "tls.ca is not set: TLS needs the cluster CA to know its peers".into(),
            ));
        }
        let mut roots = RootCertStore::empty();
        for ca in certificates(&files.ca)? {
            roots.add(ca).map_err(|e| TlsError::Invalid {
                path: files.ca.clone(),
                reason: format!("not a usable CA certificate: {e}"),
            })?;
        }
        let own = match (
            files.cert.as_os_str().is_empty(),
            files.key.as_os_str().is_empty(),
        ) {
            (true, true) => None,
            (false, true) => {
                return Err(TlsError::Config(
                    "tls.key is not set: a certificate needs its key".into(),
                ));
            }
            (true, false) => {
                return Err(TlsError::Config(
                    "tls.cert is not set: a key needs its certificate".into(),
                ));
            }
            (false, false) => Some(Own::load(files)?),
        };
        let m = Self {
            roots: Arc::new(roots),
            own,
        };
        // A key that is not the certificate's fails here, not at the first
        // connection.
        if m.own.is_some() {
            m.server_config(ClientAuth::Optional, &[])
                .and_then(|_| m.client_config(&[]))
                .map_err(|e| TlsError::Invalid {
                    path: files.key.clone(),
                    reason: format!("does not go with {}: {e}", files.cert.display()),
                })?;
        }
        Ok(m)
    }

    /// Who this process is, as its own certificate says (None: a client
    /// without a certificate).
    pub fn identity(&self) -> Option<&Peer> {
        self.own.as_ref().map(|o| &o.identity)
    }

    /// A server config presenting this process's certificate; clients are
    /// verified against the cluster CA. `alpn`: the protocols offered.
    pub fn server_config(&self, clients: ClientAuth, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, TlsError> {
        let own = self
            .own
            .as_ref()
            .ok_or_else(|| TlsError::Config("a server needs a certificate (tls.cert, tls.key)".into()))?;
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider());
        let verifier = match clients {
            ClientAuth::Required => verifier.build(),
            ClientAuth::Optional => verifier.allow_unauthenticated().build(),
        }
        .map_err(|e| TlsError::Config(format!("client verifier: {e}")))?;
        let mut cfg = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(rustls::DEFAULT_VERSIONS)
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(own.chain.clone(), own.key.clone_key())
            .map_err(|e| TlsError::Config(e.to_string()))?;
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(cfg))
    }

    /// A client config that trusts only the cluster CA and presents this
    /// process's certificate, if it has one, to servers that ask.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, TlsError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(rustls::DEFAULT_VERSIONS)
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(self.roots.clone());
        let mut cfg = match &self.own {
            Some(own) => builder
                .with_client_auth_cert(own.chain.clone(), own.key.clone_key())
                .map_err(|e| TlsError::Config(e.to_string()))?,
            None => builder.with_no_client_auth(),
        };
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(cfg))
    }
}

impl Own {
    fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        let chain = certificates(&files.cert)?;
        let key_pem = read(&files.key)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey(files.key.clone()),
            e => TlsError::Invalid {
                path: files.key.clone(),
                reason: format!("not a PEM private key: {e}"),
            },
        })?;
        let identity = Peer::of_certificate(&chain[0]).map_err(|_| TlsError::Invalid {
            path: files.cert.clone(),
            reason: format!("names no granary identity (a URI {URI_PREFIX}ROLE/NAME)"),
        })?;
        Ok(Self { chain, key, identity })
    }
}

#[cfg(all(test, feature = "certs"))]
mod tests {
    use super::issue::{Authority, Issued};
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn write(dir: &Path, name: &str, issued: &Issued, ca: &Authority) -> TlsFiles {
        issued.write(dir, name).expect("write");
        ca.write_cert(dir).expect("ca");
        TlsFiles {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
            ca: dir.join("ca.crt"),
        }
    }

    #[test]
    fn identities_come_only_from_a_granary_uri() {
        assert_eq!(
            Peer::from_uri("granary://datanode/1f2e"),
            Some(Peer {
                role: Role::Datanode,
                name: "1f2e".into()
            })
        );
        for bad in [
            "granary://admin/x",
            "granary://user/",
            "granary://user/a/b",
            "https://user/alice",
            "granary://user/al ice",
        ] {
            assert_eq!(Peer::from_uri(bad), None, "{bad}");
        }
        assert!(Peer::new(Role::User, &"x".repeat(MAX_NAME + 1)).is_err());
    }

    /// A server and a client with certificates of one CA talk, and each
    /// learns who the other is; a client whose certificate another CA
    /// signed is refused by a server that requires one, and so is a client
    /// without any.
    #[tokio::test]
    async fn peers_of_one_ca_talk_and_others_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Authority::new("test cluster").expect("ca");
        let nn = ca
            .issue(
                &Peer::new(Role::Namenode, "nn1").expect("peer"),
                &["127.0.0.1".into()],
            )
            .expect("issue");
        let alice = ca
            .issue(&Peer::new(Role::User, "alice").expect("peer"), &[])
            .expect("issue");
        let server = Material::load(&write(dir.path(), "namenode", &nn, &ca)).expect("load");
        let client = Material::load(&write(dir.path(), "alice", &alice, &ca)).expect("load");
        assert_eq!(client.identity().expect("own").uri(), "granary://user/alice");

        let other_dir = tempfile::tempdir().expect("tempdir");
        let other = Authority::new("another cluster").expect("ca");
        let mallory = other
            .issue(&Peer::new(Role::User, "alice").expect("peer"), &[])
            .expect("issue");
        let stranger = Material::load(&write(other_dir.path(), "alice", &mallory, &other)).expect("load");

        let acceptor = tokio_rustls::TlsAcceptor::from(
            server
                .server_config(ClientAuth::Required, &[b"test"])
                .expect("server"),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let srv = tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..3 {
                let (tcp, _) = listener.accept().await.expect("accept");
                match acceptor.accept(tcp).await {
                    Ok(mut tls) => {
                        let who = tls
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .map(|c| Peer::of_certificate(c).expect("identity"));
                        let mut buf = [0u8; 5];
                        tls.read_exact(&mut buf).await.expect("read");
                        tls.write_all(&buf).await.expect("echo");
                        tls.shutdown().await.ok();
                        seen.push(Ok(who));
                    }
                    Err(e) => seen.push(Err(e.to_string())),
                }
            }
            seen
        });

        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
        let connect = |m: Option<&Material>| {
            let cfg = match m {
                Some(m) => m.client_config(&[b"test"]).expect("client"),
                // No certificate of its own, but trusting the right CA.
                None => Arc::new(
                    ClientConfig::builder_with_provider(provider())
                        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
                        .expect("versions")
                        .with_root_certificates(client.roots.clone())
                        .with_no_client_auth(),
                ),
            };
            let name = name.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
                let mut tls = tokio_rustls::TlsConnector::from(cfg).connect(name, tcp).await?;
                tls.write_all(b"hello").await?;
                let mut buf = [0u8; 5];
                tls.read_exact(&mut buf).await?;
                let who = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| Peer::of_certificate(c).expect("identity"));
                Ok::<_, std::io::Error>((buf, who))
            }
        };
        let (echo, server_is) = connect(Some(&client)).await.expect("same CA");
        assert_eq!(&echo, b"hello");
        assert_eq!(server_is.expect("server cert").uri(), "granary://namenode/nn1");
        assert!(connect(Some(&stranger)).await.is_err(), "another CA's client");
        assert!(connect(None).await.is_err(), "a client without a certificate");
        let seen = srv.await.expect("server");
        assert_eq!(
            seen[0].as_ref().expect("ok").as_ref().map(Peer::uri).as_deref(),
            Some("granary://user/alice")
        );
        assert!(seen[1].is_err() && seen[2].is_err(), "{seen:?}");
    }

    /// Files that are missing, empty, of the wrong kind, or a key that is
    /// not the certificate's, are refused when loaded, naming the file.
    #[test]
    fn bad_files_are_named_when_loaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Authority::new("test cluster").expect("ca");
        let a = ca
            .issue(&Peer::new(Role::User, "a").expect("peer"), &[])
            .expect("a");
        let b = ca
            .issue(&Peer::new(Role::User, "b").expect("peer"), &[])
            .expect("b");
        let files = write(dir.path(), "a", &a, &ca);
        write(dir.path(), "b", &b, &ca);
        assert!(Material::load(&files).is_ok());
        let err = |f: &TlsFiles| Material::load(f).err().expect("refused").to_string();

        let missing = TlsFiles {
            cert: dir.path().join("nope.crt"),
            ..files.clone()
        };
        assert!(err(&missing).contains("nope.crt"), "{}", err(&missing));
        let unset = TlsFiles {
            key: PathBuf::new(),
            ..files.clone()
        };
        assert!(err(&unset).contains("tls.key is not set"), "{}", err(&unset));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").expect("write");
        let no_cert = TlsFiles {
            cert: empty.clone(),
            ..files.clone()
        };
        assert!(err(&no_cert).contains("no PEM certificate"), "{}", err(&no_cert));
        let key_as_cert = TlsFiles {
            cert: files.key.clone(),
            ..files.clone()
        };
        assert!(err(&key_as_cert).contains("a.key"), "{}", err(&key_as_cert));
        let wrong_key = TlsFiles {
            key: dir.path().join("b.key"),
            ..files.clone()
        };
        assert!(
            err(&wrong_key).contains("does not go with"),
            "{}",
            err(&wrong_key)
        );
    }
}
