//! Which namenode a client talks to, and failing over between the
//! namenodes of an HA group (issue 20).
//!
//! A client is given one namenode address or a comma-separated list. Every
//! namenode call goes through [`Namenodes::call`]: a namenode that is not
//! the leader answers `StandbyException`, naming the leader when it knows
//! it, and the call moves there (or to the next address of the list); a
//! namenode that cannot be reached moves it to the next address. Rounds
//! over the list are separated by a growing pause, and the call gives up
//! after [`ClientOptions::failover_timeout`]. The namenode that answered
//! last is tried first by the next call.
//!
//! Each call carries the client's id and a call id, the same on each retry
//! ([`granary_common::retry`]): a namenode that applied a call whose answer
//! was lost recognises the retry, so even calls that change the namespace
//! are retried after a connection failure.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::caller::Caller;
use granary_common::ErrorCode;
use granary_common::error::{ERROR_CODE_METADATA, leader_hint};
use granary_common::net::Net;
use granary_common::retry::CallKey;
use granary_proto::client_protocol_client::ClientProtocolClient;
use parking_lot::Mutex;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::{ClientError, Result};

/// The generated stub of the namenode's client service.
pub(crate) type Stub = ClientProtocolClient<Channel>;

/// How a client reaches its namenodes.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// How long one call (or [`DfsClient::connect`](crate::DfsClient::connect))
    /// keeps trying the namenodes before it gives up: long enough for the
    /// group to elect a new leader.
    pub failover_timeout: Duration,
    /// The pause after the first round over every namenode; it doubles
    /// after each further round, up to `failover_max_backoff`.
    pub failover_backoff: Duration,
    pub failover_max_backoff: Duration,
    /// TLS for every connection (namenodes and datanodes): the cluster CA,
    /// and the user's certificate when it proves who it is with one. None:
    /// in the clear.
    pub tls: Option<std::sync::Arc<granary_common::tls::Tls>>,
    /// A delegation token every namenode call carries: the client acts as
    /// the token's owner (a cluster with `auth = "token"`).
    pub token: Option<String>,
    /// The user to act for (HDFS's doas): the namenode allows it when this
    /// client's own user is a proxy user there.
    pub doas: Option<String>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            failover_timeout: Duration::from_secs(30),
            failover_backoff: Duration::from_millis(100),
            failover_max_backoff: Duration::from_millis(300),
            tls: None,
            token: None,
            doas: None,
        }
    }
}

/// The endpoint for `addr` (`host:port` or a URL).
fn endpoint(addr: &str) -> Result<Endpoint> {
    let endpoint = granary_common::net::endpoint(addr)
        .map_err(|e| ClientError::InvalidArgument(format!("namenode: {e}")))?;
    // HTTP/2 pings while a call is in flight: a call to a namenode whose
    // machine died or was cut off fails within seconds (and moves to the
    // next namenode) instead of waiting out TCP's retransmissions.
    Ok(endpoint
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(2))
        .keep_alive_timeout(Duration::from_secs(3))
        .tcp_nodelay(true))
}

fn stub(channel: Channel) -> Stub {
    ClientProtocolClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20)
}

/// Why a namenode did not serve a call, when another namenode may.
#[derive(Debug)]
enum Failure {
    /// Not the leader: it did nothing. It may name the leader.
    Standby { leader: Option<String> },
    /// Not reached, gone mid-call, or shutting down: the call may or may
    /// not have been applied.
    Unreachable,
}

impl Failure {
    /// What `st` says about the namenode that sent it; `None` for an answer
    /// to the call itself (an error the caller gets).
    fn of(st: &tonic::Status) -> Option<Self> {
        if st.metadata().get(ERROR_CODE_METADATA).is_none() {
            // Statuses the transport made up: no namenode answered.
            return matches!(
                st.code(),
                tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
            )
            .then_some(Self::Unreachable);
        }
        match ErrorCode::from_status(st) {
            ErrorCode::Standby => Some(Self::Standby {
                leader: leader_hint(st),
            }),
            // A namenode shutting down (HDFS's RetriableException).
            ErrorCode::Unavailable => Some(Self::Unreachable),
            _ => None,
        }
    }
}

/// The namenodes one round of a call tries: first the one it starts with
/// (the last leader, or a leader a standby named), then the list from
/// there on. A leader a standby names goes next; nobody twice a round.
struct Round<'a> {
    list: &'a [String],
    start: usize,
    steps: usize,
    next: Option<String>,
    seen: Vec<String>,
}

impl<'a> Round<'a> {
    fn new(list: &'a [String], first: String) -> Self {
        Self {
            list,
            start: list.iter().position(|a| *a == first).unwrap_or(0),
            steps: 0,
            next: Some(first),
            seen: Vec::new(),
        }
    }

    fn named_leader(&mut self, leader: String) {
        self.next = Some(leader);
    }

    fn next_target(&mut self) -> Option<String> {
        if let Some(n) = self.next.take()
            && !self.seen.contains(&n)
        {
            self.seen.push(n.clone());
            return Some(n);
        }
        while self.steps < self.list.len() {
            let a = &self.list[(self.start + self.steps) % self.list.len()];
            self.steps += 1;
            if !self.seen.contains(a) {
                self.seen.push(a.clone());
                return Some(a.clone());
            }
        }
        None
    }
}

struct State {
    /// The namenode that answered last (the leader as far as this client
    /// knows); possibly one a standby named that is not in the list.
    leader: String,
    channels: HashMap<String, Channel>,
}

/// The namenodes a client knows, its id, and its call counter. Shared by
/// the clones of a client and by [`DfsClient::as_user`](crate::DfsClient::as_user).
pub(crate) struct Namenodes {
    /// The addresses as given (`a:8020,b:8020`).
    spec: String,
    /// In the order given: the order they are tried in.
    addrs: Vec<String>,
    endpoints: Vec<Endpoint>,
    net: Net,
    options: ClientOptions,
    client_id: String,
    next_call_id: AtomicU64,
    state: Mutex<State>,
}

impl Namenodes {
    /// The namenodes of `spec`, a comma-separated list; none is contacted yet.
    pub(crate) fn new(spec: &str, options: ClientOptions) -> Result<Self> {
        let addrs: Vec<String> = spec
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(String::from)
            .collect();
        let Some(first) = addrs.first().cloned() else {
            return Err(ClientError::InvalidArgument(format!(
                "no namenode address in {spec:?}"
            )));
        };
        let endpoints = addrs.iter().map(|a| endpoint(a)).collect::<Result<_>>()?;
        Ok(Self {
            spec: spec.to_string(),
            addrs,
            endpoints,
            net: Net::new(options.tls.clone()),
            options,
            client_id: uuid::Uuid::new_v4().to_string(),
            next_call_id: AtomicU64::new(0),
            state: Mutex::new(State {
                leader: first,
                channels: HashMap::new(),
            }),
        })
    }

    /// The options these namenodes were reached with.
    pub(crate) fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// How this client reaches namenodes and datanodes.
    pub(crate) fn net(&self) -> &Net {
        &self.net
    }

    pub(crate) fn spec(&self) -> &str {
        &self.spec
    }

    pub(crate) fn addrs(&self) -> &[String] {
        &self.addrs
    }

    pub(crate) fn client_id(&self) -> &str {
        &self.client_id
    }

    pub(crate) fn leader(&self) -> String {
        self.state.lock().leader.clone()
    }

    /// A fresh call key; its retries reuse it.
    pub(crate) fn next_call(&self) -> CallKey {
        CallKey {
            client_id: self.client_id.clone(),
            call_id: self.next_call_id.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// A lone namenode: one that cannot be reached is an error at once,
    /// as it was before clients knew of several.
    fn alone(&self, addr: &str) -> bool {
        self.addrs.len() == 1 && self.addrs[0] == addr
    }

    fn remember(&self, addr: &str) {
        let mut st = self.state.lock();
        if st.leader != addr {
            tracing::info!(namenode = %addr, previous = %st.leader, "namenode failover: now using this namenode");
            st.leader = addr.to_string();
        }
    }

    /// The channel to `addr`, connecting on first use. Channels to
    /// namenodes outside the list are kept only while one is the leader.
    fn channel(&self, addr: &str) -> Result<Channel> {
        if let Some(ch) = self.state.lock().channels.get(addr) {
            return Ok(ch.clone());
        }
        let ch = match self.addrs.iter().position(|a| a == addr) {
            Some(i) => self.net.lazy(&self.endpoints[i]),
            None => self.net.lazy(&endpoint(addr)?),
        };
        let mut st = self.state.lock();
        if !self.addrs.iter().any(|a| a == addr) {
            let State { leader, channels } = &mut *st;
            channels.retain(|a, _| a == leader.as_str() || self.addrs.contains(a));
        }
        Ok(st.channels.entry(addr.to_string()).or_insert(ch).clone())
    }

    /// The stub of the namenode calls go to first.
    pub(crate) fn leader_stub(&self) -> Stub {
        let leader = self.leader();
        let channel = self
            .channel(&leader)
            .unwrap_or_else(|_| self.net.lazy(&self.endpoints[0]));
        stub(channel)
    }

    /// Connects to a namenode of the list now (the first that accepts a
    /// connection), so that a client with no reachable namenode fails at
    /// once; a lone namenode is asked once.
    pub(crate) async fn connect(&self) -> Result<()> {
        let mut tries = Tries::new(&self.options);
        loop {
            for (addr, endpoint) in self.addrs.iter().zip(&self.endpoints) {
                match self.net.connect(endpoint).await {
                    Ok(ch) => {
                        let mut st = self.state.lock();
                        st.channels.insert(addr.clone(), ch);
                        st.leader = addr.clone();
                        return Ok(());
                    }
                    Err(source) => {
                        let e = ClientError::Connect {
                            addr: addr.clone(),
                            source,
                        };
                        if self.alone(addr) {
                            return Err(e);
                        }
                        tracing::debug!(namenode = %addr, error = %e, "cannot connect to namenode; trying the next");
                        tries.failed(addr, e);
                        if tries.expired() {
                            return Err(tries.give_up_connecting());
                        }
                    }
                }
            }
            if !tries.pause().await {
                return Err(tries.give_up_connecting());
            }
        }
    }

    /// Runs `rpc` (one method of the stub) with `msg` on the leader,
    /// failing over as the module doc says. `name` names the call in logs.
    pub(crate) async fn call<M, R, F, Fut>(
        &self,
        caller: &Caller,
        name: &'static str,
        msg: M,
        mut rpc: F,
    ) -> Result<R>
    where
        M: Clone,
        F: FnMut(Stub, tonic::Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let key = self.next_call();
        let mut tries = Tries::new(&self.options);
        let mut named: Option<String> = None;
        loop {
            let first = named.take().unwrap_or_else(|| self.leader());
            let mut round = Round::new(&self.addrs, first);
            while let Some(target) = round.next_target() {
                let channel = match self.channel(&target) {
                    Ok(ch) => ch,
                    Err(e) => {
                        // A leader named by a standby that is no address.
                        tries.failed(&target, e);
                        continue;
                    }
                };
                let mut req = tonic::Request::new(msg.clone());
                caller.apply(req.metadata_mut());
                key.apply(req.metadata_mut());
                let st = match rpc(stub(channel), req).await {
                    Ok(resp) => {
                        self.remember(&target);
                        return Ok(resp.into_inner());
                    }
                    Err(st) => st,
                };
                match Failure::of(&st) {
                    None => {
                        // The leader answered; the answer is an error.
                        self.remember(&target);
                        return Err(st.into());
                    }
                    Some(Failure::Unreachable) if self.alone(&target) => return Err(st.into()),
                    Some(Failure::Unreachable) => {
                        tracing::debug!(namenode = %target, call = name, call_id = key.call_id, error = %st.message(), "namenode unreachable; trying the next");
                    }
                    Some(Failure::Standby { leader }) => {
                        tracing::debug!(namenode = %target, call = name, call_id = key.call_id, leader = ?leader, "namenode is standby; trying the leader");
                        if let Some(l) = leader.filter(|l| *l != target) {
                            round.named_leader(l.clone());
                            named = Some(l);
                        }
                    }
                }
                tries.failed(&target, st.into());
                if tries.expired() {
                    return Err(tries.give_up());
                }
            }
            if !tries.pause().await {
                return Err(tries.give_up());
            }
        }
    }
}

/// The bookkeeping of one call's (or connect's) attempts: the deadline,
/// the pause between rounds, who was tried and the last failure.
struct Tries {
    started: Instant,
    deadline: Instant,
    backoff: Duration,
    max_backoff: Duration,
    tried: Vec<String>,
    last: Option<(String, ClientError)>,
}

impl Tries {
    fn new(o: &ClientOptions) -> Self {
        let started = Instant::now();
        Self {
            started,
            deadline: started + o.failover_timeout,
            backoff: o.failover_backoff,
            max_backoff: o.failover_max_backoff.max(o.failover_backoff),
            tried: Vec::new(),
            last: None,
        }
    }

    fn failed(&mut self, addr: &str, e: ClientError) {
        if !self.tried.iter().any(|a| a == addr) {
            self.tried.push(addr.to_string());
        }
        self.last = Some((addr.to_string(), e));
    }

    fn expired(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// Waits between two rounds; false once the time is up.
    async fn pause(&mut self) -> bool {
        if self.expired() {
            return false;
        }
        let left = self.deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(self.backoff.min(left)).await;
        self.backoff = (self.backoff * 2).min(self.max_backoff);
        true
    }

    /// The error for a call that ran out of time.
    fn give_up(&mut self) -> ClientError {
        let (last_addr, last) = self.take_last();
        ClientError::NoNamenode {
            tried: std::mem::take(&mut self.tried),
            waited: self.started.elapsed(),
            last_addr,
            last: Box::new(last),
        }
    }

    /// The error for a connect that ran out of time.
    fn give_up_connecting(&mut self) -> ClientError {
        let (_, last) = self.take_last();
        let last = match &last {
            ClientError::Connect { source, .. } => crate::error::with_causes(source),
            e => e.to_string(),
        };
        ClientError::ConnectAny {
            addrs: std::mem::take(&mut self.tried),
            waited: self.started.elapsed(),
            last,
        }
    }

    fn take_last(&mut self) -> (String, ClientError) {
        self.last.take().unwrap_or_else(|| {
            (
                String::new(),
                ClientError::Protocol("no namenode was tried".into()),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    fn drain(r: &mut Round<'_>) -> Vec<String> {
        std::iter::from_fn(|| r.next_target()).collect()
    }

    #[test]
    fn a_round_starts_at_the_leader_and_wraps_around_the_list() {
        let l = list(&["a", "b", "c"]);
        assert_eq!(drain(&mut Round::new(&l, "b".into())), list(&["b", "c", "a"]));
        assert_eq!(
            drain(&mut Round::new(&l, "x".into())),
            list(&["x", "a", "b", "c"])
        );
    }

    #[test]
    fn a_named_leader_goes_next_but_nobody_twice_a_round() {
        let l = list(&["a", "b", "c"]);
        let mut r = Round::new(&l, "a".into());
        assert_eq!(r.next_target().as_deref(), Some("a"));
        r.named_leader("c".into());
        assert_eq!(r.next_target().as_deref(), Some("c"));
        // c names a, which was tried: the list goes on.
        r.named_leader("a".into());
        assert_eq!(drain(&mut r), list(&["b"]));
    }

    #[test]
    fn transport_statuses_and_standbys_fail_over_answers_do_not() {
        use granary_common::error::{standby_status, status};
        assert!(matches!(
            Failure::of(&tonic::Status::unavailable("tcp connect error")),
            Some(Failure::Unreachable)
        ));
        assert!(matches!(
            Failure::of(&tonic::Status::unknown("connection reset")),
            Some(Failure::Unreachable)
        ));
        assert!(matches!(
            Failure::of(&standby_status("not the leader", Some("b:1"))),
            Some(Failure::Standby { leader: Some(l) }) if l == "b:1"
        ));
        assert!(matches!(
            Failure::of(&status(ErrorCode::Unavailable, "shutting down")),
            Some(Failure::Unreachable)
        ));
        for code in [
            ErrorCode::SafeMode,
            ErrorCode::NotEnoughReplicas,
            ErrorCode::FileNotFound,
            ErrorCode::Internal,
        ] {
            assert!(Failure::of(&status(code, "m")).is_none(), "{code}");
        }
        assert!(Failure::of(&tonic::Status::internal("decode error")).is_none());
    }
}
