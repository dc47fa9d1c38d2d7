//! The namenode's web UI on its HTTP port: server-rendered HTML (no
//! JavaScript build), pages `/` (overview, with the last hour's activity
//! charted and refreshing every 10 s), `/datanodes` (usage bars against
//! the cluster's mean) and `/explorer`
//! (browse directories a page of `listing_limit` entries at a time, see a
//! file's blocks and where they live, download through WebHDFS). Browsing
//! uses simple auth like WebHDFS: `user.name` in the query, `dr.who`
//! without.

use std::sync::Arc;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, html};

use crate::rpc::client_service::{ClientService, as_user as request};
use crate::state::NamenodeState;
use granary_common::format::{date_utc, human};
use granary_common::identity::Identity;
use granary_common::webhdfs::{self as web, Params, WebError};
use granary_proto as pb;
use granary_proto::client_protocol_server::ClientProtocol;

struct Ui {
    st: Arc<NamenodeState>,
    svc: ClientService,
    activity: Arc<crate::activity::Activity>,
}

pub fn routes(st: Arc<NamenodeState>, activity: Arc<crate::activity::Activity>) -> Router {
    let ui = Arc::new(Ui {
        svc: ClientService::new(st.clone()),
        st,
        activity,
    });
    Router::new()
        .route("/", get(overview))
        .route("/datanodes", get(datanodes))
        .route("/explorer", get(explorer))
        .with_state(ui)
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222}\
nav a{margin-right:1.5em}table{border-collapse:collapse;margin:1em 0}\
th,td{border:1px solid #ccc;padding:.3em .7em;text-align:left}th{background:#f0f0f0}\
.bad{color:#b00;font-weight:bold}.ok{color:#070}";

fn page(title: &str, body: Markup) -> Html<String> {
    page_with(title, body, false)
}

/// A page; `live` ones reload themselves every 10 s.
fn page_with(title: &str, body: Markup, live: bool) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    @if live { meta http-equiv="refresh" content="10"; }
                    title { (title) " - Granary" }
                    style { (STYLE) (crate::charts::STYLE) }
                }
                body {
                    nav {
                        a href="/" { "Overview" }
                        a href="/datanodes" { "Datanodes" }
                        a href="/explorer?path=/" { "Browse the file system" }
                    }
                    h1 { (title) }
                    (body)
                }
            }
        }
        .into_string(),
    )
}

use granary_common::format::datanode_state as state_name;

fn uptime(secs: u64) -> String {
    format!(
        "{}d {}h {}m {}s",
        secs / 86400,
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60
    )
}

async fn overview(State(ui): State<Arc<Ui>>) -> Html<String> {
    let st = &ui.st;
    let nodes = st.datanodes().report();
    let h = st.health();
    let count = |s: pb::DatanodeState| nodes.iter().filter(|n| n.state == s as i32).count();
    let (cap, used, rem) = nodes.iter().fold((0u64, 0u64, 0u64), |(a, b, c), n| {
        (a + n.capacity, b + n.dfs_used, c + n.remaining)
    });
    let healthy = h.missing == 0;
    let ha = st.ha().map(|ha| ha.status());
    let samples = ui.activity.samples();
    let now = chrono::Utc::now().timestamp_millis();
    let window = st.config().web_ui.history_minutes as i64 * 60_000;
    let series = |f: fn(&crate::activity::Sample) -> f64| -> Vec<(i64, f64)> {
        samples.iter().map(|s| (s.at_ms, f(s))).collect()
    };
    const MIB: f64 = 1048576.0;
    let mean = crate::charts::percent(used, cap);
    page_with(
        "Namenode overview",
        html! {
            h2 { "Activity, last " (st.config().web_ui.history_minutes) " minutes" }
            (crate::charts::line_chart("chart-ops", "Namenode client calls", "ops/s", 1.0, &series(|s| s.ops_per_sec), now, window))
            (crate::charts::line_chart("chart-write", "Datanodes writing", "MiB/s", MIB, &series(|s| s.write_bytes_per_sec), now, window))
            (crate::charts::line_chart("chart-read", "Datanodes reading", "MiB/s", MIB, &series(|s| s.read_bytes_per_sec), now, window))
            h2 { "Capacity" }
            table #usage {
                tr { th { "Datanode" } th { "Used" } th { "Usage" } }
                @for n in &nodes {
                    @let addr = n.id.as_ref().map(|i| i.rpc_addr.clone()).unwrap_or_default();
                    @let pct = crate::charts::percent(n.dfs_used, n.capacity);
                    tr { td { (addr) } td { (human(n.dfs_used)) " (" (format!("{pct:.1}%")) ")" }
                         td { (crate::charts::usage_bar(pct, mean, &format!("{} of {}", human(n.dfs_used), human(n.capacity)))) } }
                }
            }
            @if let Some(ha) = &ha {
                h2 { "Namenode group" }
                p { "This namenode: " (ha.node_id) ", term " (ha.term) ", leader: "
                    @if ha.leader_id.is_empty() { span.bad { "none (election running)" } } @else { (ha.leader_id) }
                    ", leader changes seen: " (ha.elections) }
                table #ha {
                    tr { th { "Namenode" } th { "RPC address" } th { "Role" } th { "Last log index" } th { "Applied index" } th { "Lag (entries)" } }
                    @for m in &ha.members {
                        tr { td { (m.node_id) } td { (m.rpc_addr) } td { (m.role) } td { (m.last_log_index) }
                             td { (m.last_applied_index) } td { (m.lag) } }
                    }
                }
            }
            table #summary {
                tr { th { "Cluster ID" } td { (st.cluster_id()) } }
                tr { th { "Version" } td { (granary_common::VERSION) } }
                tr { th { "Uptime" } td { (uptime(st.started().elapsed().as_secs())) } }
                tr { th { "Safe mode" } td {
                    @if h.safe_mode { span.bad { "ON" } " — " (st.safe_mode().status()) } @else { "OFF" }
                } }
                tr { th { "Configured capacity" } td { (human(cap)) } }
                tr { th { "DFS used" } td { (human(used)) } }
                tr { th { "DFS remaining" } td { (human(rem)) } }
                tr { th { "Live datanodes" } td { (count(pb::DatanodeState::Live)) } }
                tr { th { "Stale datanodes" } td { (count(pb::DatanodeState::Stale)) } }
                tr { th { "Dead datanodes" } td { (count(pb::DatanodeState::Dead)) } }
                tr { th { "Decommissioning datanodes" } td { (count(pb::DatanodeState::Decommissioning)) } }
                tr { th { "Blocks" } td { (h.blocks_total) } }
                tr { th { "Under-replicated blocks" } td { (h.under_replicated) } }
                tr { th { "Missing blocks" } td { @if healthy { (h.missing) } @else { span.bad { (h.missing) } } } }
                tr { th { "Corrupt replicas reported" } td { (h.corrupt_replicas) } }
                tr { th { "Block health" } td {
                    @if healthy { span.ok { "HEALTHY" } } @else { span.bad { "CORRUPT" } }
                } }
            }
        },
        true,
    )
}

async fn datanodes(State(ui): State<Arc<Ui>>) -> Html<String> {
    let nodes = ui.st.datanodes().report();
    let now = chrono::Utc::now().timestamp_millis();
    let (cap, used) = nodes
        .iter()
        .fold((0u64, 0u64), |(c, u), n| (c + n.capacity, u + n.dfs_used));
    let mean = crate::charts::percent(used, cap);
    page_with(
        "Datanodes",
        html! {
            p #mean { "Cluster mean usage " (format!("{mean:.1}%")) " (the red mark); the balancer brings every node within its threshold of it." }
            table #datanodes {
                tr {
                    th { "Node" } th { "Uuid" } th { "Rack" } th { "State" } th { "Capacity" }
                    th { "Used" } th { "Remaining" } th { "Blocks" } th { "Last contact" } th { "Usage" }
                }
                @for n in &nodes {
                    @let id = n.id.clone().unwrap_or_default();
                    tr {
                        td { (id.rpc_addr) }
                        td { (id.uuid) }
                        td { (id.rack) }
                        td { (state_name(n.state)) }
                        td { (human(n.capacity)) }
                        td { (human(n.dfs_used)) }
                        td { (human(n.remaining)) }
                        td { (ui.st.blocks().node_block_count(&id.uuid)) }
                        td { ((now - n.last_heartbeat_ms).max(0) / 1000) " s ago" }
                        td { (crate::charts::usage_bar(crate::charts::percent(n.dfs_used, n.capacity), mean, &human(n.dfs_used))) }
                    }
                }
            }
        },
        true,
    )
}

fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

fn explorer_link(path: &str, user: &str) -> String {
    let q = web::query_string(&[("path".into(), path.into()), ("user.name".into(), user.into())]);
    format!("/explorer?{q}")
}

/// The page of directory `path`'s listing after the entry named `after`.
fn page_link(path: &str, user: &str, after: &str) -> String {
    let q = web::query_string(&[
        ("path".into(), path.into()),
        ("user.name".into(), user.into()),
        ("start_after".into(), after.into()),
    ]);
    format!("/explorer?{q}")
}

async fn explorer(State(ui): State<Arc<Ui>>, RawQuery(q): RawQuery) -> Response {
    let p = web::params_of(q);
    let path = web::path_of(p.get("path").unwrap_or("/"));
    match browse(&ui, &p, &path).await {
        Ok(body) => page(&format!("Browse {path}"), body).into_response(),
        Err(e) => {
            let code = e.code.http();
            let body = html! { p.bad { (e.code.java_exception()) ": " (e.message) } };
            (
                if code.is_success() {
                    StatusCode::BAD_REQUEST
                } else {
                    code
                },
                page(&format!("Browse {path}"), body),
            )
                .into_response()
        }
    }
}

async fn browse(ui: &Ui, p: &Params, path: &str) -> Result<Markup, WebError> {
    let user = p.user()?;
    let id = Identity::new(user.clone());
    let st = ui
        .svc
        .get_file_info(request(&id, pb::GetFileInfoRequest { path: path.into() }))
        .await?
        .into_inner()
        .status
        .ok_or_else(|| {
            WebError::remote(
                granary_common::ErrorCode::FileNotFound,
                &format!("{path}: No such file or directory"),
            )
        })?;
    let parent = match path.rsplit_once('/') {
        Some(("", _)) | None => "/".to_string(),
        Some((p, _)) => p.to_string(),
    };
    if st.is_dir() {
        // One page (`listing_limit` entries) per view, never the whole directory.
        let after = p.get("start_after").unwrap_or("");
        let req = pb::GetListingRequest {
            path: path.into(),
            start_after: after.into(),
            limit: 0,
        };
        let page = ui.svc.get_listing(request(&id, req)).await?.into_inner();
        let entries = page.entries;
        let next = entries.last().filter(|_| page.has_more).map(|e| e.name.clone());
        return Ok(html! {
            p { "Browsing as " b { (user) } ". " @if path != "/" { a href=(explorer_link(&parent, &user)) { "Up to " (parent) } } }
            table #listing {
                tr {
                    th { "Permission" } th { "Owner" } th { "Group" } th { "Size" }
                    th { "Replication" } th { "Block size" } th { "Last modified" } th { "Name" }
                }
                @for e in &entries {
                    @let dir = e.is_dir();
                    tr {
                        td { (if dir { "d" } else { "-" }) (crate::permission::mode_string(e.permission)) }
                        td { (e.owner) }
                        td { (e.group) }
                        td { @if dir { "" } @else { (human(e.length)) } }
                        td { @if dir { "" } @else { (e.replication) } }
                        td { @if dir { "" } @else { (human(e.block_size)) } }
                        td { (date_utc(e.modification_time)) }
                        td { a href=(explorer_link(&join(path, &e.name), &user)) { (e.name) } }
                    }
                }
            }
            p #page {
                (entries.len()) " of " (st.children_num) " entries"
                @if !after.is_empty() { " after " (after) }
            }
            p {
                @if !after.is_empty() { a #first href=(explorer_link(path, &user)) { "First page" } " " }
                @if let Some(last) = &next { a #next href=(page_link(path, &user, last)) { "Next page" } }
            }
        });
    }
    let lb = ui
        .svc
        .get_block_locations(request(
            &id,
            pb::GetBlockLocationsRequest {
                path: path.into(),
                offset: 0,
                length: 0,
            },
        ))
        .await?
        .into_inner()
        .blocks
        .unwrap_or_default();
    let download = format!(
        "{}{}?{}",
        web::PREFIX,
        web::encode_path(path),
        web::query_string(&[("op".into(), "OPEN".into()), ("user.name".into(), user.clone())])
    );
    Ok(html! {
        p { a href=(explorer_link(&parent, &user)) { "Back to " (parent) } }
        table #file {
            tr { th { "Size" } td { (st.length) " bytes (" (human(st.length)) ")" } }
            tr { th { "Replication" } td { (st.replication) } }
            tr { th { "Block size" } td { (human(st.block_size)) } }
            tr { th { "Owner" } td { (st.owner) ":" (st.group) } }
            tr { th { "Permission" } td { "-" (crate::permission::mode_string(st.permission)) } }
            tr { th { "Last modified" } td { (date_utc(st.modification_time)) } }
            tr { th { "Open for writing" } td { (if st.under_construction { "yes" } else { "no" }) } }
        }
        p { a #download href=(download) { "Download" } }
        h2 { "Blocks" }
        table #blocks {
            tr { th { "#" } th { "Block ID" } th { "Generation" } th { "Size" } th { "Locations" } }
            @for (i, b) in lb.blocks.iter().enumerate() {
                @let blk = b.block.unwrap_or_default();
                tr {
                    td { (i) }
                    td { (blk.block_id) }
                    td { (blk.generation_stamp) }
                    td { (blk.num_bytes) }
                    td {
                        @if b.locations.is_empty() { span.bad { "no live replica" } }
                        @for l in &b.locations {
                            @let lid = l.id.clone().unwrap_or_default();
                            (lid.rpc_addr) " (" (state_name(l.state)) ") "
                        }
                    }
                }
            }
        }
    })
}
