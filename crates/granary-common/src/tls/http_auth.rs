//! Who calls a daemon's HTTP port (web UI, `/metrics`, WebHDFS) in secure
//! mode. With `auth = "tls"`, `/healthz` answers anyone (load balancers,
//! container health checks); everything else needs a client certificate of
//! the cluster CA. A user's certificate is the caller: its name replaces
//! any `user.name` the query gives; a `doas` stays, for WebHDFS to allow
//! only to proxy users (the namenode decides, also for a datanode's
//! gateway, which passes it on). A daemon's certificate (the
//! namenode's or a datanode's) keeps the `user.name` it sends. A WebHDFS
//! call with a delegation token (`delegation=`) needs no certificate: the
//! namenode checks the token (a datanode passes it on to the namenode).

use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ConnInfo, ConnListener, Peer, Role};
use crate::ErrorCode;
use crate::config::AuthMode;
use crate::webhdfs::WebError;

impl Connected<axum::serve::IncomingStream<'_, ConnListener>> for ConnInfo {
    fn connect_info(stream: axum::serve::IncomingStream<'_, ConnListener>) -> Self {
        stream.io().info().clone()
    }
}

/// Paths anyone may ask for, with or without a certificate.
const OPEN: &[&str] = &["/healthz"];

/// The middleware (`axum::middleware::from_fn_with_state(auth, certified)`).
pub async fn certified(State(auth): State<AuthMode>, mut req: Request, next: Next) -> Response {
    if auth == AuthMode::Simple || OPEN.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    if auth == AuthMode::Token
        && req.uri().path().starts_with(crate::webhdfs::PREFIX)
        && has_delegation(req.uri())
    {
        return next.run(req).await;
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<ConnInfo>>()
        .and_then(|c| c.0.peer.clone());
    match peer {
        None => WebError::new(
            ErrorCode::Unauthenticated,
            "this cluster requires a client certificate of the cluster CA (auth = tls)",
        )
        .into_response(),
        Some(Peer {
            role: Role::User,
            name,
        }) => match as_user(req.uri(), &name) {
            Ok(uri) => {
                *req.uri_mut() = uri;
                next.run(req).await
            }
            Err(e) => e.into_response(),
        },
        Some(_) => next.run(req).await,
    }
}

/// Whether `key` is the parameter `name` (in any case: WebHDFS reads
/// parameter names case-insensitively).
fn is(key: &str, name: &str) -> bool {
    key.eq_ignore_ascii_case(name)
}

fn has_delegation(uri: &axum::http::Uri) -> bool {
    form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .any(|(k, v)| is(&k, "delegation") && !v.is_empty())
}

/// `uri` with `user.name=USER` in place of any the query gives.
fn as_user(uri: &axum::http::Uri, user: &str) -> Result<axum::http::Uri, WebError> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let mut q = form_urlencoded::Serializer::new(String::new());
    // Every spelling of user.name goes (User.Name too): the handlers would
    // read the first one; delegation= too (a certificate is the caller).
    for (k, v) in pairs
        .iter()
        .filter(|(k, _)| !is(k, "user.name") && !is(k, "delegation"))
    {
        q.append_pair(k, v);
    }
    q.append_pair("user.name", user);
    let pq = format!("{}?{}", uri.path(), q.finish());
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(
        pq.parse()
            .map_err(|e| WebError::new(ErrorCode::InvalidArgument, format!("{e}")))?,
    );
    axum::http::Uri::from_parts(parts).map_err(|e| WebError::new(ErrorCode::InvalidArgument, format!("{e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificates_user_replaces_the_claimed_one() {
        let uri: axum::http::Uri = "/webhdfs/v1/a%20b?op=LISTSTATUS&user.name=hdfs&user.name=x"
            .parse()
            .unwrap();
        let out = as_user(&uri, "alice").unwrap();
        assert_eq!(out.path(), "/webhdfs/v1/a%20b");
        let q: Vec<(String, String)> = form_urlencoded::parse(out.query().unwrap().as_bytes())
            .into_owned()
            .collect();
        assert_eq!(
            q,
            vec![
                ("op".to_string(), "LISTSTATUS".to_string()),
                ("user.name".to_string(), "alice".to_string())
            ]
        );
        // doas stays for the namenode to judge (alice's, as the caller).
        let doas: axum::http::Uri = "/webhdfs/v1/?op=MKDIRS&DoAs=hdfs&user.name=hdfs".parse().unwrap();
        assert_eq!(
            as_user(&doas, "alice").unwrap().query(),
            Some("op=MKDIRS&DoAs=hdfs&user.name=alice")
        );
        // Another spelling of user.name (the handlers read keys in any
        // case) is dropped, and so is a delegation token.
        let sneaky: axum::http::Uri = "/webhdfs/v1/?User.Name=hdfs&op=DELETE&Delegation=x"
            .parse()
            .unwrap();
        let q: Vec<(String, String)> =
            form_urlencoded::parse(as_user(&sneaky, "alice").unwrap().query().unwrap().as_bytes())
                .into_owned()
                .collect();
        assert_eq!(
            q,
            vec![
                ("op".to_string(), "DELETE".to_string()),
                ("user.name".to_string(), "alice".to_string())
            ]
        );
    }
}
