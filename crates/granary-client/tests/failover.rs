//! Failover between namenodes (issue 20) against fake namenodes: tonic
//! servers on 127.0.0.1 that serve, answer as a standby (naming a leader or
//! not), answer like a connection that broke, or refuse, and record the
//! retry-cache keys of every call they get.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use granary_client::{ClientError, ClientOptions, DfsClient, Identity};
use granary_common::error::{standby_status, status};
use granary_common::retry::CallKey;
use granary_common::{ErrorCode, HasErrorCode};
use granary_proto as pb;
use granary_proto::client_protocol_server::{ClientProtocol, ClientProtocolServer};
use parking_lot::Mutex;
use tonic::{Request, Response, Status};

#[derive(Debug, Clone)]
enum Mode {
    Serve,
    /// Not the leader; names this one, if any.
    Standby(Option<String>),
    /// What a client sees when the connection breaks mid-call: the
    /// namenode may or may not have applied the call.
    Lost,
    /// Refuses every call with this code.
    Refuse(ErrorCode),
}

#[derive(Debug, Clone, PartialEq)]
struct Seen {
    method: &'static str,
    key: Option<CallKey>,
}

struct Shared {
    mode: Mutex<Mode>,
    seen: Mutex<Vec<Seen>>,
}

impl Shared {
    fn answer<T>(&self, method: &'static str, req: &Request<T>) -> Result<(), Status> {
        self.seen.lock().push(Seen {
            method,
            key: CallKey::from_metadata(req.metadata()),
        });
        match self.mode.lock().clone() {
            Mode::Serve => Ok(()),
            Mode::Standby(leader) => Err(standby_status("not the leader", leader.as_deref())),
            Mode::Lost => Err(Status::unavailable("error reading a body from connection")),
            Mode::Refuse(code) => Err(status(code, "refused")),
        }
    }
}

/// A fake namenode, stopped when dropped.
struct Fake {
    addr: String,
    shared: Arc<Shared>,
    _server: tokio::task::JoinHandle<()>,
}

impl Fake {
    async fn start(mode: Mode) -> Fake {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let shared = Arc::new(Shared {
            mode: Mutex::new(mode),
            seen: Mutex::new(Vec::new()),
        });
        let service = ClientProtocolServer::new(FakeNamenode(shared.clone()));
        let server = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
        Fake {
            addr,
            shared,
            _server: server,
        }
    }

    fn set(&self, mode: Mode) {
        *self.shared.mode.lock() = mode;
    }

    fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().clone()
    }

    fn calls(&self) -> usize {
        self.shared.seen.lock().len()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self._server.abort();
    }
}

struct FakeNamenode(Arc<Shared>);

/// The fake's service: `get_file_info` answers a status of length 42, the
/// other methods their response's default, when serving. (One macro makes
/// the whole impl: `async_trait` must see the methods expanded.)
macro_rules! fake_namenode {
    ($($method:ident: $req:ident => $resp:ident),* $(,)?) => {
        #[tonic::async_trait]
        impl ClientProtocol for FakeNamenode {
            $(
                async fn $method(&self, req: Request<pb::$req>) -> Result<Response<pb::$resp>, Status> {
                    self.0.answer(stringify!($method), &req)?;
                    Ok(Response::new(pb::$resp::default()))
                }
            )*

            async fn get_file_info(
                &self,
                req: Request<pb::GetFileInfoRequest>,
            ) -> Result<Response<pb::GetFileInfoResponse>, Status> {
                self.0.answer("get_file_info", &req)?;
                Ok(Response::new(pb::GetFileInfoResponse {
                    status: Some(pb::FileStatus {
                        name: req.into_inner().path,
                        length: 42,
                        ..Default::default()
                    }),
                }))
            }
        }
    };
}

fake_namenode! {
    mkdirs: MkdirsRequest => MkdirsResponse,
    create: CreateRequest => CreateResponse,
    add_block: AddBlockRequest => AddBlockResponse,
    abandon_block: AbandonBlockRequest => AbandonBlockResponse,
    complete: CompleteRequest => CompleteResponse,
    get_listing: GetListingRequest => GetListingResponse,
    rename: RenameRequest => RenameResponse,
    delete: DeleteRequest => DeleteResponse,
    set_replication: SetReplicationRequest => SetReplicationResponse,
    set_permission: SetPermissionRequest => SetPermissionResponse,
    set_owner: SetOwnerRequest => SetOwnerResponse,
    set_times: SetTimesRequest => SetTimesResponse,
    get_content_summary: GetContentSummaryRequest => GetContentSummaryResponse,
    set_quota: SetQuotaRequest => SetQuotaResponse,
    change_snapshot: ChangeSnapshotRequest => ChangeSnapshotResponse,
    get_snapshot_diff: GetSnapshotDiffRequest => GetSnapshotDiffResponse,
    get_snapshottable_dirs: GetSnapshottableDirsRequest => GetSnapshottableDirsResponse,
    balance: BalanceRequest => BalanceResponse,
    disk_balance: DiskBalanceRequest => DiskBalanceResponse,
    get_block_locations: GetBlockLocationsRequest => GetBlockLocationsResponse,
    append: AppendRequest => AppendResponse,
    recover_lease: RecoverLeaseRequest => RecoverLeaseResponse,
    update_block_for_pipeline: UpdateBlockForPipelineRequest => UpdateBlockForPipelineResponse,
    get_additional_datanode: GetAdditionalDatanodeRequest => GetAdditionalDatanodeResponse,
    fsync: FsyncRequest => FsyncResponse,
    renew_lease: RenewLeaseRequest => RenewLeaseResponse,
    report_bad_blocks: ReportBadBlocksRequest => ReportBadBlocksResponse,
    get_server_defaults: GetServerDefaultsRequest => GetServerDefaultsResponse,
    get_datanode_report: GetDatanodeReportRequest => GetDatanodeReportResponse,
    set_safe_mode: SetSafeModeRequest => SetSafeModeResponse,
    set_datanode_admin_state: SetDatanodeAdminStateRequest => SetDatanodeAdminStateResponse,
    checkpoint: CheckpointRequest => CheckpointResponse,
    change_namenodes: ChangeNamenodesRequest => ChangeNamenodesResponse,
    transfer_leadership: TransferLeadershipRequest => TransferLeadershipResponse,
    get_delegation_token: GetDelegationTokenRequest => GetDelegationTokenResponse,
    renew_delegation_token: RenewDelegationTokenRequest => RenewDelegationTokenResponse,
    cancel_delegation_token: CancelDelegationTokenRequest => CancelDelegationTokenResponse,
}

/// An address nothing listens on, with the socket holding its port: a port
/// merely freed could be handed to a listener of a test running beside this
/// one, and a bound socket that never listens refuses every connection.
struct DeadAddr {
    addr: String,
    _held: tokio::net::TcpSocket,
}

fn dead_addr() -> DeadAddr {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    DeadAddr {
        addr: socket.local_addr().unwrap().to_string(),
        _held: socket,
    }
}

fn quick(timeout_ms: u64) -> ClientOptions {
    ClientOptions {
        failover_timeout: Duration::from_millis(timeout_ms),
        failover_backoff: Duration::from_millis(20),
        failover_max_backoff: Duration::from_millis(100),
        tls: None,
        token: None,
        doas: None,
    }
}

fn alice() -> Identity {
    Identity::new("alice")
}

async fn length_of(c: &DfsClient, path: &str) -> u64 {
    c.stat(path).await.unwrap().length
}

#[tokio::test]
async fn a_standby_names_the_leader_and_the_client_stays_there() {
    let leader = Fake::start(Mode::Serve).await;
    // The leader is not in the list: a named leader is taken anyway.
    let standby = Fake::start(Mode::Standby(Some(leader.addr.clone()))).await;
    let c = DfsClient::connect(&standby.addr, alice()).await.unwrap();
    assert_eq!(length_of(&c, "/a").await, 42);
    assert_eq!(c.active_namenode(), leader.addr);
    assert_eq!((standby.calls(), leader.calls()), (1, 1));
    // The next call goes to the leader at once.
    assert_eq!(length_of(&c, "/b").await, 42);
    assert_eq!((standby.calls(), leader.calls()), (1, 2));

    // Leadership moves back: the former leader names the former standby.
    standby.set(Mode::Serve);
    leader.set(Mode::Standby(Some(standby.addr.clone())));
    c.mkdirs("/d", None, true).await.unwrap();
    assert_eq!(c.active_namenode(), standby.addr);
}

#[tokio::test]
async fn every_retry_of_a_call_carries_its_client_id_and_call_id() {
    let leader = Fake::start(Mode::Serve).await;
    let standby = Fake::start(Mode::Standby(Some(leader.addr.clone()))).await;
    let c = DfsClient::connect(&format!("{},{}", standby.addr, leader.addr), alice())
        .await
        .unwrap();
    c.mkdirs("/a", None, true).await.unwrap();
    c.mkdirs("/b", None, true).await.unwrap();
    let first = standby.seen()[0].clone();
    let key = first.key.clone().expect("a call key");
    assert_eq!(key.client_id, c.client_id());
    assert_eq!(
        leader.seen(),
        vec![
            first,
            Seen {
                method: "mkdirs",
                key: Some(CallKey {
                    client_id: key.client_id.clone(),
                    call_id: key.call_id + 1
                })
            }
        ],
        "the retry on the leader has the standby's call id; the next call a new one"
    );
    // Another client has another id.
    let other = DfsClient::connect(&leader.addr, alice()).await.unwrap();
    other.mkdirs("/c", None, true).await.unwrap();
    let last = leader.seen().pop().unwrap().key.unwrap();
    assert_ne!(last.client_id, key.client_id);
}

#[tokio::test]
async fn a_call_whose_outcome_is_unknown_is_retried_elsewhere_with_the_same_ids() {
    let lost = Fake::start(Mode::Lost).await;
    let leader = Fake::start(Mode::Serve).await;
    let c = DfsClient::connect(&format!("{},{}", lost.addr, leader.addr), alice())
        .await
        .unwrap();
    c.rename("/a", "/b", false).await.unwrap();
    assert_eq!(lost.seen().len(), 1);
    assert_eq!(lost.seen(), leader.seen(), "same method, client id and call id");
    assert_eq!(c.active_namenode(), leader.addr);
}

#[tokio::test]
async fn a_dead_namenode_in_the_list_is_skipped() {
    let leader = Fake::start(Mode::Serve).await;
    let dead_port = dead_addr();
    let dead = dead_port.addr.clone();
    let list = format!("{dead}, {}", leader.addr);
    // Connecting now skips it...
    let c = DfsClient::connect(&list, alice()).await.unwrap();
    assert_eq!(length_of(&c, "/a").await, 42);
    assert_eq!(c.namenode_addrs(), [dead.clone(), leader.addr.clone()]);
    // ...and so does a call on a client that connects on first use.
    let lazy = DfsClient::connect_lazy(&list, alice()).unwrap();
    assert_eq!(lazy.active_namenode(), dead);
    assert_eq!(length_of(&lazy, "/a").await, 42);
    assert_eq!(lazy.active_namenode(), leader.addr);
}

#[tokio::test]
async fn a_standby_that_names_no_leader_moves_the_call_to_the_next_address() {
    let standby = Fake::start(Mode::Standby(None)).await;
    let leader = Fake::start(Mode::Serve).await;
    let c = DfsClient::connect(&format!("{},{}", standby.addr, leader.addr), alice())
        .await
        .unwrap();
    assert_eq!(length_of(&c, "/a").await, 42);
    assert_eq!((standby.calls(), leader.calls()), (1, 1));
}

#[tokio::test]
async fn without_a_leader_a_call_gives_up_in_time_naming_every_namenode() {
    let a = Fake::start(Mode::Standby(None)).await;
    let b = Fake::start(Mode::Standby(None)).await;
    let dead_port = dead_addr();
    let dead = dead_port.addr.clone();
    let list = format!("{},{},{dead}", a.addr, b.addr);
    let c = DfsClient::connect_with(&list, alice(), quick(600)).await.unwrap();
    let t = Instant::now();
    let e = c.mkdirs("/a", None, true).await.unwrap_err();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_secs(5),
        "{took:?}"
    );
    let msg = e.to_string();
    for addr in [&a.addr, &b.addr, &dead] {
        assert!(msg.contains(addr.as_str()), "{msg}");
    }
    assert!(matches!(e, ClientError::NoNamenode { .. }), "{e:?}");
    // As the last one tried failed: a standby, or the dead one.
    assert!(
        matches!(e.code(), ErrorCode::Standby | ErrorCode::Unavailable),
        "{e}"
    );
    assert!(
        a.calls() > 2 && b.calls() > 2,
        "rounds: {} {}",
        a.calls(),
        b.calls()
    );
    // Rounds are spaced: 20 ms doubling to 100 ms is at most ~9 rounds in 600 ms.
    assert!(a.calls() < 15, "{}", a.calls());

    // A lone standby: retried until the time is up, then its error.
    let e = DfsClient::connect_with(&a.addr, alice(), quick(300))
        .await
        .unwrap()
        .stat("/")
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Standby, "{e}");
    assert!(e.to_string().contains(&a.addr), "{e}");
}

#[tokio::test]
async fn connecting_gives_up_in_time_naming_every_namenode() {
    let (xp, yp) = (dead_addr(), dead_addr());
    let (x, y) = (&xp.addr, &yp.addr);
    let t = Instant::now();
    let e = DfsClient::connect_with(&format!("{x},{y}"), alice(), quick(300))
        .await
        .err()
        .unwrap();
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert!(
        e.to_string()
            .starts_with(&format!("cannot connect to namenode at {x}, {y} (tried for")),
        "{e}"
    );
    assert_eq!(e.code(), ErrorCode::Unavailable);
}

#[tokio::test]
async fn a_lone_namenode_that_cannot_be_reached_fails_at_once_as_before() {
    let dead_port = dead_addr();
    let dead = dead_port.addr.clone();
    let t = Instant::now();
    let e = DfsClient::connect(&dead, alice()).await.err().unwrap();
    assert!(
        e.to_string()
            .starts_with(&format!("cannot connect to namenode at {dead}:")),
        "{e}"
    );
    let e = DfsClient::connect_lazy(&dead, alice())
        .unwrap()
        .stat("/")
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unavailable);
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}

#[tokio::test]
async fn answers_of_the_leader_are_not_retried() {
    let leader = Fake::start(Mode::Refuse(ErrorCode::FileNotFound)).await;
    let other = Fake::start(Mode::Serve).await;
    let c = DfsClient::connect(&format!("{},{}", leader.addr, other.addr), alice())
        .await
        .unwrap();
    assert!(c.get_file_info("/nope").await.unwrap().is_none());
    // Safe mode and too few replicas are gRPC UNAVAILABLE too, but answers.
    for code in [ErrorCode::SafeMode, ErrorCode::NotEnoughReplicas] {
        leader.set(Mode::Refuse(code));
        let e = c.mkdirs("/d", None, true).await.unwrap_err();
        assert_eq!(e.code(), code);
    }
    assert_eq!((leader.calls(), other.calls()), (3, 0));
}

#[tokio::test]
async fn a_list_without_an_address_is_refused() {
    for spec in ["", " , ", "a:1,b c:2"] {
        let e = DfsClient::connect_lazy(spec, alice()).err().unwrap();
        assert_eq!(e.code(), ErrorCode::InvalidArgument, "{spec:?}");
    }
}
