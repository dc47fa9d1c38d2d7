//! The Granary client library: an async [`DfsClient`] for the namespace
//! (and, as the data path lands, for reading and writing files).
//!
//! ```no_run
//! # async fn demo() -> Result<(), granary_client::ClientError> {
//! use granary_client::{DfsClient, Identity};
//! // One namenode, or the namenodes of an HA group: calls fail over.
//! let fs = DfsClient::connect("nn1:8020,nn2:8020,nn3:8020", Identity::new("alice")).await?;
//! fs.mkdirs("/user/alice/data", None, true).await?;
//! for st in fs.list("/user/alice").await? {
//!     println!("{} {}", st.name, st.length);
//! }
//! # Ok(()) }
//! ```

/// Calls the namenode method `$method` with the message `$msg` through
/// [`DfsClient::call`] (failover, retries); the response message.
macro_rules! nn_call {
    ($client:expr, $method:ident, $msg:expr) => {
        $client.call(stringify!($method), $msg, |mut nn, req| async move {
            nn.$method(req).await
        })
    };
}

mod balancer;
mod caller;
mod error;
mod failover;
mod file_checksum;
pub mod ha;
mod reader;
mod snapshot;
mod tokens;
mod trash;
pub mod types;
mod writer;

pub use balancer::{BalanceOptions, BalanceReport, DiskBalanceStatus, Volume};
pub use error::ClientError;
pub use failover::ClientOptions;
pub use file_checksum::FileChecksum;
pub use granary_common::identity::Identity;
pub use reader::FileReader;
pub use snapshot::{DiffEntry, DiffKind, SnapshottableDir};
pub use tokens::DelegationToken;
pub use trash::{Expunged, Trashed};
pub use types::{
    Block, BlockId, BlockLocations, Checkpoint, ClusterHealth, ClusterReport, ContentSummary,
    DatanodeAdminAction, DatanodeId, DatanodeInfo, DatanodeState, FileId, FileStatus, ListingPage,
    LocatedBlock, QuotaSetting, SafeModeAction, SafeModeStatus, ServerDefaults,
};
pub use writer::{CreateOptions, FileWriter};

use std::sync::Arc;

use granary_common::{ErrorCode, HasErrorCode};
use granary_proto as pb;
use granary_proto::client_protocol_client::ClientProtocolClient;
use tonic::transport::Channel;

use failover::Namenodes;

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// A connection to a namenode (or to the namenodes of an HA group, failing
/// over between them), acting as one user.
#[derive(Clone)]
pub struct DfsClient {
    namenodes: Arc<Namenodes>,
    /// Who its namenode calls come from.
    caller: caller::Caller,
    client_name: String,
    datanodes: Arc<granary_common::net::ChannelPool>,
    /// Fetched once per client, as HDFS clients cache server defaults.
    defaults: Arc<tokio::sync::OnceCell<ServerDefaults>>,
}

impl DfsClient {
    /// Connects to the namenode at `addr` (`host:port`), or to one of the
    /// namenodes of a comma-separated list (`nn1:8020,nn2:8020,nn3:8020`),
    /// between which calls then fail over.
    pub async fn connect(addr: &str, identity: Identity) -> Result<Self> {
        Self::connect_with(addr, identity, ClientOptions::default()).await
    }

    /// [`connect`](Self::connect) with options other than the defaults.
    pub async fn connect_with(addr: &str, identity: Identity, options: ClientOptions) -> Result<Self> {
        let namenodes = Namenodes::new(addr, options)?;
        namenodes.connect().await?;
        Ok(Self::over(namenodes, identity))
    }

    /// Like [`connect`](Self::connect), connecting on first use instead of now
    /// (for daemons that must start before the namenode is up).
    pub fn connect_lazy(addr: &str, identity: Identity) -> Result<Self> {
        Self::connect_lazy_with(addr, identity, ClientOptions::default())
    }

    /// [`connect_lazy`](Self::connect_lazy) with options other than the defaults.
    pub fn connect_lazy_with(addr: &str, identity: Identity, options: ClientOptions) -> Result<Self> {
        Ok(Self::over(Namenodes::new(addr, options)?, identity))
    }

    fn over(namenodes: Namenodes, identity: Identity) -> Self {
        let datanodes = Arc::new(granary_common::net::ChannelPool::new(namenodes.net().clone()));
        let caller = caller::Caller {
            token: namenodes.options().token.as_deref().map(Arc::from),
            doas: namenodes.options().doas.as_deref().map(Arc::from),
            identity,
        };
        Self {
            namenodes: Arc::new(namenodes),
            client_name: Self::lease_name(&caller.identity),
            caller,
            datanodes,
            defaults: Default::default(),
        }
    }

    /// A client acting as another user over the same connections (a gateway
    /// such as WebHDFS serving many users). It holds its own leases.
    pub fn as_user(&self, identity: Identity) -> Self {
        let mut c = self.clone();
        c.client_name = Self::lease_name(&identity);
        c.caller.identity = identity;
        c
    }

    /// This client carrying `token` on its namenode calls instead of its
    /// own (None: none), over the same connections: a gateway serving a
    /// request that came with a delegation token lets the namenode check
    /// it. It holds its own leases.
    pub fn with_token(&self, token: Option<&str>) -> Self {
        let mut c = self.clone();
        c.client_name = Self::lease_name(&c.caller.identity);
        c.caller.token = token.map(Arc::from);
        c
    }

    /// This client acting for `user` (HDFS's doas; None: for itself) over
    /// the same connections: the namenode allows it when this client's own
    /// user is a proxy user there. It holds its own leases.
    pub fn with_doas(&self, user: Option<&str>) -> Self {
        let mut c = self.clone();
        c.client_name = Self::lease_name(&c.caller.identity);
        c.caller.doas = user.map(Arc::from);
        c
    }

    /// A new lease holder name for a client of `identity`.
    fn lease_name(identity: &Identity) -> String {
        format!("granary-client-{}-{}", identity.user, uuid::Uuid::new_v4())
    }

    /// How this client reaches namenodes and datanodes (in the clear or
    /// over TLS).
    pub fn net(&self) -> &granary_common::net::Net {
        self.namenodes.net()
    }

    pub fn identity(&self) -> &Identity {
        &self.caller.identity
    }

    /// The lease holder name of this client.
    pub fn client_name(&self) -> &str {
        &self.client_name
    }

    /// The namenode address(es) as given to [`connect`](Self::connect).
    pub fn namenode_addr(&self) -> &str {
        self.namenodes.spec()
    }

    /// The namenodes of [`namenode_addr`](Self::namenode_addr), in order.
    pub fn namenode_addrs(&self) -> &[String] {
        self.namenodes.addrs()
    }

    /// The namenode calls go to first: the one that answered last (the
    /// leader as far as this client knows), at first the first of the list.
    pub fn active_namenode(&self) -> String {
        self.namenodes.leader()
    }

    /// The id this client's calls carry (with a call id) so that a namenode
    /// recognises a retried call (shared with [`as_user`](Self::as_user)'s clients).
    pub fn client_id(&self) -> &str {
        self.namenodes.client_id()
    }

    /// The raw gRPC stub, for calls this type does not wrap (tests, tools
    /// speaking the protocol itself), connected to
    /// [`active_namenode`](Self::active_namenode); its calls do not fail
    /// over. Its messages are the `granary-proto` crate's; everything else
    /// in this crate speaks the client's own types.
    pub fn rpc(&self) -> ClientProtocolClient<Channel> {
        self.namenodes.leader_stub()
    }

    /// A request carrying this client's identity and a new call id, for
    /// [`rpc`](Self::rpc).
    pub fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        self.caller.apply(r.metadata_mut());
        self.namenodes.next_call().apply(r.metadata_mut());
        r
    }

    /// Sends `msg` with the stub method `rpc` to the leader, failing over
    /// between the namenodes (the `failover` module); `name` names the call
    /// in logs. Use through `nn_call!`.
    pub(crate) async fn call<M, R, F, Fut>(&self, name: &'static str, msg: M, rpc: F) -> Result<R>
    where
        M: Clone,
        F: FnMut(failover::Stub, tonic::Request<M>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        self.namenodes.call(&self.caller, name, msg, rpc).await
    }

    /// Creates a directory; with `parents`, its missing ancestors too.
    pub async fn mkdirs(&self, path: &str, permission: Option<u32>, parents: bool) -> Result<()> {
        let req = pb::MkdirsRequest {
            path: path.into(),
            permission: permission.unwrap_or(0),
            create_parent: parents,
        };
        nn_call!(self, mkdirs, req).await?;
        Ok(())
    }

    /// The status of `path`, or `None` when nothing is there.
    pub async fn get_file_info(&self, path: &str) -> Result<Option<FileStatus>> {
        match self.stat(path).await {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.code() == ErrorCode::FileNotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The status of `path`; an error if nothing is there.
    pub async fn stat(&self, path: &str) -> Result<FileStatus> {
        let req = pb::GetFileInfoRequest { path: path.into() };
        let resp = nn_call!(self, get_file_info, req).await?;
        resp.status
            .map(FileStatus::from)
            .ok_or_else(|| ClientError::Protocol("getFileInfo answered without a status".into()))
    }

    /// One page of a listing after `start_after`.
    pub async fn list_page(&self, path: &str, start_after: &str, limit: u32) -> Result<ListingPage> {
        let req = pb::GetListingRequest {
            path: path.into(),
            start_after: start_after.into(),
            limit,
        };
        Ok(nn_call!(self, get_listing, req).await?.into())
    }

    /// A directory's entries a page (`listing_limit`, 1000) at a time, in
    /// name order, or the file itself; each page is asked for when the
    /// previous one was taken, so a huge directory is never held whole.
    ///
    /// ```no_run
    /// # async fn demo(fs: &granary_client::DfsClient) -> Result<(), granary_client::ClientError> {
    /// use futures::TryStreamExt;
    /// let mut pages = std::pin::pin!(fs.list_pages("/logs"));
    /// while let Some(page) = pages.try_next().await? {
    ///     for st in page {
    ///         println!("{}", st.name);
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn list_pages<'a>(
        &'a self,
        path: &'a str,
    ) -> impl futures::Stream<Item = Result<Vec<FileStatus>>> + Send + 'a {
        futures::stream::try_unfold(Some(String::new()), move |after| async move {
            let Some(after) = after else {
                return Ok(None);
            };
            let page = self.list_page(path, &after, 0).await?;
            // A page that says "more" but brings nothing ends it too.
            let next = page
                .entries
                .last()
                .filter(|_| page.has_more)
                .map(|e| e.name.clone());
            Ok(Some((page.entries, next)))
        })
    }

    /// Every entry of a directory (all pages, held together), or the file
    /// itself. [`list_pages`](Self::list_pages) holds one page at a time.
    pub async fn list(&self, path: &str) -> Result<Vec<FileStatus>> {
        use futures::TryStreamExt;
        self.list_pages(path).try_concat().await
    }

    /// Moves `src` to `dst` (into `dst` when it is a directory).
    pub async fn rename(&self, src: &str, dst: &str, overwrite: bool) -> Result<()> {
        let req = pb::RenameRequest {
            src: src.into(),
            dst: dst.into(),
            overwrite,
        };
        nn_call!(self, rename, req).await?;
        Ok(())
    }

    pub async fn delete(&self, path: &str, recursive: bool) -> Result<()> {
        let req = pb::DeleteRequest {
            path: path.into(),
            recursive,
        };
        nn_call!(self, delete, req).await?;
        Ok(())
    }

    pub async fn set_replication(&self, path: &str, replication: u32) -> Result<()> {
        let req = pb::SetReplicationRequest {
            path: path.into(),
            replication,
        };
        nn_call!(self, set_replication, req).await?;
        Ok(())
    }

    pub async fn set_permission(&self, path: &str, permission: u32) -> Result<()> {
        let req = pb::SetPermissionRequest {
            path: path.into(),
            permission,
        };
        nn_call!(self, set_permission, req).await?;
        Ok(())
    }

    pub async fn set_owner(&self, path: &str, owner: Option<&str>, group: Option<&str>) -> Result<()> {
        let req = pb::SetOwnerRequest {
            path: path.into(),
            owner: owner.map(String::from),
            group: group.map(String::from),
        };
        nn_call!(self, set_owner, req).await?;
        Ok(())
    }

    /// Sets times in milliseconds since the epoch; `None` leaves one unchanged.
    pub async fn set_times(&self, path: &str, mtime: Option<i64>, atime: Option<i64>) -> Result<()> {
        let req = pb::SetTimesRequest {
            path: path.into(),
            modification_time: mtime,
            access_time: atime,
        };
        nn_call!(self, set_times, req).await?;
        Ok(())
    }

    /// Sets or clears directory `path`'s name and space quotas (superuser).
    pub async fn set_quota(&self, path: &str, names: QuotaSetting, space: QuotaSetting) -> Result<()> {
        let req = pb::SetQuotaRequest {
            path: path.into(),
            name_quota: names.to_wire(),
            space_quota: space.to_wire(),
        };
        nn_call!(self, set_quota, req).await?;
        Ok(())
    }

    pub async fn content_summary(&self, path: &str) -> Result<ContentSummary> {
        let req = pb::GetContentSummaryRequest { path: path.into() };
        Ok(nn_call!(self, get_content_summary, req).await?.into())
    }

    /// Blocks of `path` overlapping `[offset, offset + length)` with their replica holders.
    pub async fn block_locations(&self, path: &str, offset: u64, length: u64) -> Result<BlockLocations> {
        Ok(self.located_blocks(path, offset, length).await?.into())
    }

    /// [`block_locations`](Self::block_locations) as the wire has them, with
    /// the access tokens readers present to datanodes.
    pub(crate) async fn located_blocks(
        &self,
        path: &str,
        offset: u64,
        length: u64,
    ) -> Result<pb::LocatedBlocks> {
        let req = pb::GetBlockLocationsRequest {
            path: path.into(),
            offset,
            length,
        };
        nn_call!(self, get_block_locations, req)
            .await?
            .blocks
            .ok_or_else(|| ClientError::Protocol("getBlockLocations answered without blocks".into()))
    }

    /// Creates an empty file (`touchz`); an existing empty file is left as is.
    pub async fn create_empty(&self, path: &str, permission: Option<u32>) -> Result<()> {
        let req = pb::CreateRequest {
            path: path.into(),
            permission: permission.unwrap_or(0),
            client_name: self.client_name.clone(),
            overwrite: false,
            create_parent: false,
            replication: 0,
            block_size: 0,
        };
        let file = match nn_call!(self, create, req).await {
            Ok(r) => r
                .status
                .ok_or_else(|| ClientError::Protocol("create answered without a status".into()))?,
            Err(e) if e.code() == ErrorCode::FileAlreadyExists => {
                let existing = self.stat(path).await?;
                if existing.length == 0 && existing.is_file() {
                    return Ok(());
                }
                return Err(ClientError::Remote {
                    code: ErrorCode::FileAlreadyExists,
                    message: format!("{path}: Not a zero-length file"),
                });
            }
            Err(e) => return Err(e),
        };
        let req = pb::CompleteRequest {
            path: path.into(),
            file_id: file.file_id,
            client_name: self.client_name.clone(),
            last: None,
        };
        let done = nn_call!(self, complete, req).await?.completed;
        if done {
            Ok(())
        } else {
            Err(ClientError::Protocol(format!(
                "{path}: namenode did not close the empty file"
            )))
        }
    }

    /// Reads, enters or leaves safe mode.
    pub async fn safe_mode(&self, action: SafeModeAction) -> Result<SafeModeStatus> {
        let req = pb::SetSafeModeRequest {
            action: pb::SafeModeAction::from(action) as i32,
        };
        Ok(nn_call!(self, set_safe_mode, req).await?.into())
    }

    /// Starts or cancels decommissioning of a datanode (`host:port` or uuid).
    pub async fn set_datanode_admin_state(
        &self,
        datanode: &str,
        action: DatanodeAdminAction,
    ) -> Result<DatanodeInfo> {
        let req = pb::SetDatanodeAdminStateRequest {
            datanode: datanode.into(),
            action: pb::DatanodeAdminAction::from(action) as i32,
        };
        nn_call!(self, set_datanode_admin_state, req)
            .await?
            .datanode
            .map(DatanodeInfo::from)
            .ok_or_else(|| ClientError::Protocol("setDatanodeAdminState answered without a datanode".into()))
    }

    /// Live, stale and dead datanodes; superuser only.
    pub async fn datanode_report(&self) -> Result<Vec<DatanodeInfo>> {
        Ok(self.cluster_report().await?.datanodes)
    }

    /// Has the namenode write a consistent copy of its metadata into `dir`:
    /// the name of a new directory in its `checkpoint_dir`, or that
    /// directory's absolute path; superuser only.
    pub async fn checkpoint(&self, dir: &str) -> Result<Checkpoint> {
        let req = pb::CheckpointRequest { dir: dir.into() };
        Ok(nn_call!(self, checkpoint, req).await?.into())
    }

    /// Adds the namenode `node_id` at `rpc_addr` to the group (superuser;
    /// it must be formatted and running); the voters after the change.
    pub async fn add_namenode(&self, node_id: &str, rpc_addr: &str) -> Result<Vec<String>> {
        let req = pb::ChangeNamenodesRequest {
            node_id: node_id.into(),
            rpc_addr: rpc_addr.into(),
            remove: false,
        };
        Ok(nn_call!(self, change_namenodes, req).await?.voters)
    }

    /// Removes the namenode `node_id` from the group (superuser).
    pub async fn remove_namenode(&self, node_id: &str) -> Result<Vec<String>> {
        let req = pb::ChangeNamenodesRequest {
            node_id: node_id.into(),
            rpc_addr: String::new(),
            remove: true,
        };
        Ok(nn_call!(self, change_namenodes, req).await?.voters)
    }

    /// Hands the group's leadership to the voting namenode `node_id`
    /// (superuser); the new leader's name and how long the hand-over took.
    pub async fn transfer_leadership(&self, node_id: &str) -> Result<(String, std::time::Duration)> {
        let req = pb::TransferLeadershipRequest {
            node_id: node_id.into(),
        };
        let r = nn_call!(self, transfer_leadership, req).await?;
        Ok((r.leader, std::time::Duration::from_millis(r.took_ms)))
    }

    /// Datanodes, their replica counts, and block health; superuser only.
    pub async fn cluster_report(&self) -> Result<ClusterReport> {
        let req = pb::GetDatanodeReportRequest {};
        Ok(nn_call!(self, get_datanode_report, req).await?.into())
    }

    /// Creates a file and returns a writer for it.
    pub async fn create(&self, path: &str, opts: CreateOptions) -> Result<FileWriter> {
        let defaults = self.server_defaults().await?;
        let req = pb::CreateRequest {
            path: path.into(),
            permission: opts.permission.unwrap_or(0),
            client_name: self.client_name.clone(),
            overwrite: opts.overwrite,
            create_parent: opts.create_parent,
            replication: opts.replication,
            block_size: opts.block_size,
        };
        let status = nn_call!(self, create, req)
            .await?
            .status
            .ok_or_else(|| ClientError::Protocol("create answered without a status".into()))?;
        Ok(FileWriter::spawn(
            self.clone(),
            path.to_string(),
            status,
            defaults,
            None,
        ))
    }

    /// Reopens a closed file to write at its end; new data goes into new blocks.
    pub async fn append(&self, path: &str) -> Result<FileWriter> {
        let defaults = self.server_defaults().await?;
        let req = pb::AppendRequest {
            path: path.into(),
            client_name: self.client_name.clone(),
        };
        let resp = nn_call!(self, append, req).await?;
        let status = resp
            .status
            .ok_or_else(|| ClientError::Protocol("append answered without a status".into()))?;
        Ok(FileWriter::spawn(
            self.clone(),
            path.to_string(),
            status,
            defaults,
            resp.last_block,
        ))
    }

    /// Closes a file whose writer is gone (lease recovery); true when closed.
    pub async fn recover_lease(&self, path: &str) -> Result<bool> {
        let req = pb::RecoverLeaseRequest { path: path.into() };
        Ok(nn_call!(self, recover_lease, req).await?.closed)
    }

    /// Opens a file for reading.
    pub async fn open(&self, path: &str) -> Result<FileReader> {
        let located = self.located_blocks(path, 0, 0).await?;
        Ok(FileReader::new(self.clone(), path.to_string(), located))
    }

    /// The namenode's defaults (block size, checksum chunk, lease limit, ...),
    /// asked once and then reused: every create needs them.
    pub async fn server_defaults(&self) -> Result<ServerDefaults> {
        let d = self
            .defaults
            .get_or_try_init(|| async {
                let req = pb::GetServerDefaultsRequest {};
                Ok::<_, ClientError>(ServerDefaults::from(
                    nn_call!(self, get_server_defaults, req).await?,
                ))
            })
            .await?;
        Ok(d.clone())
    }

    /// Closes a written file, waiting (bounded) until the namenode has heard
    /// from the datanodes that every block has its minimum replicas.
    pub(crate) async fn complete_file(
        &self,
        path: &str,
        file_id: u64,
        last: Option<pb::ExtendedBlock>,
    ) -> Result<()> {
        let mut wait = std::time::Duration::from_millis(20);
        for _ in 0..40 {
            let req = pb::CompleteRequest {
                path: path.into(),
                file_id,
                client_name: self.client_name.clone(),
                last,
            };
            if nn_call!(self, complete, req).await?.completed {
                return Ok(());
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(std::time::Duration::from_millis(800));
        }
        Err(ClientError::Remote {
            code: ErrorCode::NotEnoughReplicas,
            message: format!("{path}: the namenode did not see enough replicas to close the file"),
        })
    }

    pub(crate) fn datanode_channel(&self, addr: &str) -> Result<tonic::transport::Channel> {
        self.datanodes.get(addr).map_err(ClientError::InvalidArgument)
    }

    pub(crate) fn forget_datanode(&self, addr: &str) {
        self.datanodes.evict(addr);
    }

    /// Tells the namenode that a replica is corrupt (presenting the block's
    /// read token, which proves the reader may read it). The caller awaits
    /// it before giving up on the block, so a report is not lost when the
    /// reading program exits on the error that follows.
    pub(crate) fn report_bad_replica(
        &self,
        located: &pb::LocatedBlock,
        datanode_uuid: String,
        reason: String,
    ) -> futures::future::BoxFuture<'static, ()> {
        let req = pb::ReportBadBlocksRequest {
            replicas: vec![pb::BadReplica {
                block: located.block,
                datanode_uuid,
                reason,
                access_token: located.access_token.clone(),
            }],
        };
        let client = self.clone();
        Box::pin(async move {
            let report = nn_call!(client, report_bad_blocks, req);
            match tokio::time::timeout(std::time::Duration::from_secs(10), report).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "could not report a corrupt replica"),
                Err(_) => {
                    tracing::warn!("could not report a corrupt replica: the namenode did not answer in 10 s")
                }
            }
        })
    }
}
