//! A process's TLS settings as they are now: the configs its listeners
//! accept with and its connections dial with, built from its files and
//! rebuilt from them on reload (a rotated certificate), without a restart.

use std::sync::Arc;

use parking_lot::RwLock;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector, client};

use super::{ClientAuth, Material, Peer, TlsError, TlsFiles};

/// gRPC (HTTP/2).
pub const ALPN_H2: &[u8] = b"h2";
/// A write pipeline on a datanode's RPC port (Granary's data transfer).
pub const ALPN_DATA: &[u8] = b"granary-dt/1";
/// The web UI, `/metrics` and WebHDFS over HTTP/1.1.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Which of a daemon's ports a connection came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// The RPC port: gRPC, and on a datanode write pipelines too.
    Rpc,
    /// The HTTP port: web UI, `/metrics`, WebHDFS.
    Http,
}

/// What a connection is dialled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dial {
    /// gRPC calls.
    Grpc,
    /// A write pipeline to a datanode.
    Data,
}

struct Configs {
    identity: Option<Peer>,
    rpc: Option<Arc<ServerConfig>>,
    http: Option<Arc<ServerConfig>>,
    grpc: Arc<ClientConfig>,
    data: Arc<ClientConfig>,
}

/// The TLS settings of a daemon or a client (cheap to share: `Arc<Tls>`).
pub struct Tls {
    files: TlsFiles,
    /// For a daemon: whether its RPC port requires client certificates.
    /// None: a client, which serves nothing.
    rpc_clients: Option<ClientAuth>,
    current: RwLock<Arc<Configs>>,
    /// Which user a user certificate's name is (`[tls] user_rules`).
    #[cfg(feature = "daemon")]
    users: super::UserMap,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("files", &self.files)
            .field("identity", &self.identity())
            .finish()
    }
}

impl Tls {
    /// A daemon's settings: its certificate, key and the cluster CA, all
    /// set. `rpc_clients`: whether callers of its RPC port must present a
    /// certificate of the cluster CA (its HTTP port asks and does not
    /// require: `/healthz` and bearer tokens come without one).
    #[cfg(feature = "daemon")]
    pub fn daemon(
        files: TlsFiles,
        rpc_clients: ClientAuth,
        users: super::UserMap,
    ) -> Result<Arc<Self>, TlsError> {
        let configs = build(&files, Some(rpc_clients))?;
        Ok(Arc::new(Self {
            files,
            rpc_clients: Some(rpc_clients),
            current: RwLock::new(Arc::new(configs)),
            users,
        }))
    }

    /// The user a user certificate names, after `[tls] user_rules`.
    #[cfg(feature = "daemon")]
    pub fn user_of(&self, name: &str) -> Option<String> {
        self.users.user(name)
    }

    /// A client's settings: the cluster CA, and a certificate with its key
    /// when the client proves who it is with one.
    pub fn client(files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let configs = build(&files, None)?;
        Ok(Arc::new(Self {
            files,
            rpc_clients: None,
            current: RwLock::new(Arc::new(configs)),
            #[cfg(feature = "daemon")]
            users: Default::default(),
        }))
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Reads the files again: new connections use what they hold now. On
    /// an error the settings stay as they were (a half-copied certificate
    /// must not take a running daemon's ports down).
    pub fn reload(&self) -> Result<(), TlsError> {
        let configs = build(&self.files, self.rpc_clients)?;
        *self.current.write() = Arc::new(configs);
        Ok(())
    }

    /// Who this process's certificate names, if it has one.
    pub fn identity(&self) -> Option<Peer> {
        self.current.read().identity.clone()
    }

    /// How connections to `port` are accepted; None for a client's settings.
    pub fn acceptor(&self, port: Port) -> Option<TlsAcceptor> {
        let c = self.current.read();
        match port {
            Port::Rpc => c.rpc.clone(),
            Port::Http => c.http.clone(),
        }
        .map(TlsAcceptor::from)
    }

    fn connector(&self, dial: Dial) -> TlsConnector {
        let c = self.current.read();
        TlsConnector::from(match dial {
            Dial::Grpc => c.grpc.clone(),
            Dial::Data => c.data.clone(),
        })
    }

    /// Opens TLS on `tcp`, connected to `addr` (`host:port`): the server's
    /// certificate must be the cluster CA's and name `host`.
    pub async fn connect(
        &self,
        dial: Dial,
        addr: &str,
        tcp: TcpStream,
    ) -> std::io::Result<client::TlsStream<TcpStream>> {
        let name = server_name(addr)?;
        self.connector(dial)
            .connect(name, tcp)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("TLS with {addr}: {e}")))
    }
}

/// The host part of `host:port` (an IP address or a DNS name, `[v6]` too)
/// as the name the server's certificate must carry.
fn server_name(addr: &str) -> std::io::Result<ServerName<'static>> {
    let host = match addr.rsplit_once(':') {
        Some((h, port)) if port.parse::<u16>().is_ok() => h,
        _ => addr,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{addr:?} has no host a certificate can name: {e}"),
        )
    })
}

fn build(files: &TlsFiles, rpc_clients: Option<ClientAuth>) -> Result<Configs, TlsError> {
    let m = match rpc_clients {
        Some(_) => Material::load(files)?,
        None => Material::load_client(files)?,
    };
    let (rpc, http) = match rpc_clients {
        Some(clients) => (
            Some(m.server_config(clients, &[ALPN_H2, ALPN_DATA])?),
            Some(m.server_config(ClientAuth::Optional, &[ALPN_H2, ALPN_HTTP1])?),
        ),
        None => (None, None),
    };
    Ok(Configs {
        identity: m.identity().cloned(),
        rpc,
        http,
        grpc: m.client_config(&[ALPN_H2])?,
        data: m.client_config(&[ALPN_DATA])?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_come_from_the_host_part() {
        assert_eq!(
            server_name("127.0.0.1:9866").unwrap(),
            ServerName::try_from("127.0.0.1").unwrap()
        );
        assert_eq!(
            server_name("[::1]:8020").unwrap(),
            ServerName::try_from("::1").unwrap()
        );
        assert_eq!(
            server_name("nn1.example:8020").unwrap(),
            ServerName::try_from("nn1.example").unwrap()
        );
        assert!(server_name("bad host:1").is_err());
    }
}
