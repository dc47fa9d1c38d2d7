//! Who a gRPC call comes from, as its connection proves it.
//!
//! Over TLS with a client certificate, the certificate says: a user's
//! certificate is that user, whatever the call claims; a namenode's or a
//! datanode's is a daemon of the cluster, which may act for the user it
//! names (the datanode's WebHDFS gateway serves its HTTP users). Without a
//! certificate the call's claim is taken (simple mode); `auth = "tls"`
//! admits no connection without one. A call made in-process (WebHDFS on
//! this namenode) has no connection and is taken as it claims.

use granary_common::ErrorCode;
use granary_common::config::AuthMode;
use granary_common::error::status;
use granary_common::identity::Identity;
use granary_common::tls::{ConnInfo, Peer, Role};
use tonic::{Request, Status};

/// The user a client call acts as. A delegation token, when the call
/// carries one, names it (and must be genuine and live); `tokens` checks it.
pub fn user<T>(
    auth: AuthMode,
    req: &Request<T>,
    tokens: impl FnOnce(&str) -> Result<String, Status>,
) -> Result<Identity, Status> {
    if let Some(token) = granary_common::identity::bearer(req.metadata()) {
        return tokens(token).map(Identity::new);
    }
    let claimed = Identity::from_metadata(req.metadata());
    let Some(conn) = ConnInfo::of(req) else {
        return Ok(claimed);
    };
    match (&conn.peer, auth) {
        (
            Some(Peer {
                role: Role::User,
                name,
            }),
            _,
        ) => Ok(Identity::new(name.clone())),
        (Some(_), _) => Ok(claimed),
        (None, AuthMode::Simple) => Ok(claimed),
        (None, AuthMode::Tls) => Err(status(
            ErrorCode::Unauthenticated,
            "this namenode requires a client certificate of the cluster CA (auth = tls)",
        )),
        (None, AuthMode::Token) => Err(status(
            ErrorCode::Unauthenticated,
            "this namenode requires a client certificate of the cluster CA or a delegation token (auth = token)",
        )),
    }
}

/// Who a call acts as, worked out once: the audit wrapper, which sees the
/// call first, leaves it in the request for the service (a token is
/// checked against the store once, not twice); WebHDFS on this namenode
/// puts in what it worked out.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The user the call acts as.
    pub user: Identity,
    /// The proxy user acting for it, when it acts for another (doas).
    pub via: Option<String>,
}

impl Authenticated {
    /// A call acting as `user` itself.
    pub fn itself(user: Identity) -> Self {
        Self { user, via: None }
    }
}

/// The user a call acts as ([`user`]), or the user it acts for when it
/// names one (`x-granary-doas`) and its own user is a proxy user
/// (`[webhdfs] proxy_users`, as HDFS's hadoop.proxyuser.*).
pub fn effective_user<T>(
    auth: AuthMode,
    proxy_users: &[String],
    req: &Request<T>,
    tokens: impl FnOnce(&str) -> Result<String, Status>,
) -> Result<Authenticated, Status> {
    let real = user(auth, req, tokens)?;
    let doas = req
        .metadata()
        .get(granary_common::identity::DOAS_METADATA)
        .and_then(|v| v.to_str().ok())
        .filter(|d| !d.is_empty() && *d != real.user);
    match doas {
        None => Ok(Authenticated::itself(real)),
        Some(doas) => Ok(Authenticated {
            user: Identity::new(proxied(proxy_users, &real.user, doas)?),
            via: Some(real.user),
        }),
    }
}

/// `doas` when `real` may act for it (a proxy user), else the refusal.
pub fn proxied(proxy_users: &[String], real: &str, doas: &str) -> Result<String, Status> {
    if !proxy_users.iter().any(|p| p == real) {
        return Err(status(
            ErrorCode::AccessControl,
            format!("User: {real} is not allowed to impersonate {doas}"),
        ));
    }
    Ok(doas.to_string())
}

/// Who `req` acts as on this namenode: [`effective_user`] with its
/// settings and its delegation tokens, or what was worked out already.
pub fn authenticate<T>(st: &crate::state::NamenodeState, req: &Request<T>) -> Result<Authenticated, Status> {
    if let Some(a) = req.extensions().get::<Authenticated>() {
        return Ok(a.clone());
    }
    let cfg = st.config();
    effective_user(cfg.auth, &cfg.webhdfs.proxy_users, req, |t| {
        super::tokens::verify(st, t)
            .map(|id| id.owner)
            .map_err(Status::from)
    })
}

/// The user `req` acts as on this namenode ([`authenticate`]).
pub fn request_user<T>(st: &crate::state::NamenodeState, req: &Request<T>) -> Result<Identity, Status> {
    authenticate(st, req).map(|a| a.user)
}

/// Checks that a datanode registering as `uuid` may: over TLS with a
/// certificate, the certificate must be that datanode's.
pub fn datanode<T>(auth: AuthMode, req: &Request<T>, uuid: &str) -> Result<(), String> {
    let peer = ConnInfo::of(req).and_then(|c| c.peer.as_ref());
    match (peer, auth) {
        (
            Some(Peer {
                role: Role::Datanode,
                name,
            }),
            _,
        ) if name == uuid => Ok(()),
        (Some(p), _) => Err(format!(
            "the connection's certificate names {}, not datanode {uuid}",
            p.uri()
        )),
        (None, AuthMode::Simple) => Ok(()),
        (None, _) => Err("a datanode needs its certificate (auth = tls or token)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(peer: Option<Peer>, claims: &str) -> Request<()> {
        let mut r = Request::new(());
        Identity::new(claims).apply(r.metadata_mut());
        r.extensions_mut().insert(ConnInfo {
            peer,
            tls: true,
            ..Default::default()
        });
        r
    }

    fn no(_: &str) -> Result<String, Status> {
        panic!("no token was sent")
    }

    #[test]
    fn a_certificate_says_who_calls() {
        let alice = Peer::new(Role::User, "alice").unwrap();
        let dn = Peer::new(Role::Datanode, "u-1").unwrap();
        for auth in [AuthMode::Simple, AuthMode::Tls] {
            // A user's certificate wins over what the call claims.
            assert_eq!(
                user(auth, &req(Some(alice.clone()), "hdfs"), no).unwrap().user,
                "alice"
            );
            // A daemon acts for the user it names.
            assert_eq!(user(auth, &req(Some(dn.clone()), "bob"), no).unwrap().user, "bob");
            assert!(datanode(auth, &req(Some(dn.clone()), "x"), "u-1").is_ok());
            assert!(datanode(auth, &req(Some(dn.clone()), "x"), "u-2").is_err());
            assert!(datanode(auth, &req(Some(alice.clone()), "x"), "alice").is_err());
        }
        assert_eq!(user(AuthMode::Simple, &req(None, "bob"), no).unwrap().user, "bob");
        assert!(user(AuthMode::Tls, &req(None, "bob"), no).is_err());
        assert!(user(AuthMode::Token, &req(None, "bob"), no).is_err());
        // A token names the user, over any claim or certificate.
        let mut with_token = req(Some(alice.clone()), "hdfs");
        with_token
            .metadata_mut()
            .insert("authorization", "Bearer t0k".parse().unwrap());
        let carol = |t: &str| {
            assert_eq!(t, "t0k");
            Ok("carol".to_string())
        };
        assert_eq!(user(AuthMode::Token, &with_token, carol).unwrap().user, "carol");
        let refused = |_: &str| Err(Status::unauthenticated("cancelled"));
        assert!(user(AuthMode::Token, &with_token, refused).is_err());
        assert!(datanode(AuthMode::Simple, &req(None, "x"), "u-1").is_ok());
        assert!(datanode(AuthMode::Tls, &req(None, "x"), "u-1").is_err());
        // In-process calls carry no connection.
        let mut inproc = Request::new(());
        Identity::new("carol").apply(inproc.metadata_mut());
        assert_eq!(user(AuthMode::Tls, &inproc, no).unwrap().user, "carol");
        // A proxy user acts for another; anyone else is refused.
        let mut doas = req(Some(alice.clone()), "x");
        doas.metadata_mut()
            .insert("x-granary-doas", "dave".parse().unwrap());
        let proxies = ["alice".to_string()];
        let a = effective_user(AuthMode::Tls, &proxies, &doas, no).unwrap();
        assert_eq!((a.user.user.as_str(), a.via.as_deref()), ("dave", Some("alice")));
        assert!(effective_user(AuthMode::Tls, &[], &doas, no).is_err());
    }
}
