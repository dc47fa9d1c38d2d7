//! The datanode's HTTP port: health, a short status, Prometheus metrics,
//! and WebHDFS data.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;

use crate::context::DatanodeContext;

pub fn router(ctx: Arc<DatanodeContext>, gateway: Arc<crate::webhdfs::DataGateway>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/", get(status_page))
        .with_state(ctx)
        .merge(crate::webhdfs::routes(gateway))
}

async fn readyz(State(ctx): State<Arc<DatanodeContext>>) -> (axum::http::StatusCode, String) {
    let registered = ctx.has_block_keys();
    let code = if registered {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        format!(
            "registered {registered}\nuuid {}\nreplicas {}\nxceivers {}\n",
            ctx.id.uuid,
            ctx.storage.replica_count(),
            ctx.xceivers()
        ),
    )
}

async fn metrics(State(ctx): State<Arc<DatanodeContext>>) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            granary_common::metrics::CONTENT_TYPE,
        )],
        ctx.metrics.render(&ctx.storage, ctx.xceivers(), &ctx.namenodes),
    )
}

/// The datanode's page: identity, namenodes, storages and replica counts.
async fn status_page(State(ctx): State<Arc<DatanodeContext>>) -> axum::response::Html<String> {
    use granary_common::format::human;
    use maud::{DOCTYPE, html};
    let registered = ctx.has_block_keys();
    let storages = ctx.storage.storage_reports();
    let highest_term = ctx.fence.lock().highest();
    axum::response::Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    title { "Datanode " (ctx.id.rpc_addr) " - Granary" }
                    style { "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.3em .7em;text-align:left}th{background:#f0f0f0}" }
                }
                body {
                    h1 { "Datanode " (ctx.id.rpc_addr) }
                    table #summary {
                        tr { th { "Uuid" } td { (ctx.id.uuid) } }
                        tr { th { "Cluster ID" } td { (ctx.cluster_id.read().clone()) } }
                        tr { th { "Rack" } td { (ctx.id.rack) } }
                        tr { th { "Registered with the namenode" } td { (if registered { "yes" } else { "no" }) } }
                        tr { th { "Replicas" } td { (ctx.storage.replica_count()) } }
                        tr { th { "Transfers in progress" } td { (ctx.xceivers()) } }
                    }
                    h2 { "Namenodes" }
                    table #namenodes {
                        tr { th { "Address" } th { "Registered" } th { "State" } th { "Term" } th { "Last heartbeat" } }
                        @for nn in &ctx.namenodes {
                            @let st = nn.status();
                            tr {
                                td { (nn.addr) }
                                td { (if st.registered { "yes" } else { "no" }) }
                                td { (namenode_state(st, highest_term)) }
                                td { (st.term) }
                                td { (st.last_heartbeat.map_or("never".to_string(), |t| format!("{} ms ago", t.elapsed().as_millis()))) }
                            }
                        }
                    }
                    h2 { "Storages" }
                    table #storages {
                        tr { th { "Path" } th { "Storage ID" } th { "Capacity" } th { "Used" } th { "Remaining" } th { "State" } }
                        @for s in &storages {
                            tr {
                                td { (s.path) }
                                td { (s.storage_id) }
                                td { (human(s.capacity)) }
                                td { (human(s.dfs_used)) }
                                td { (human(s.remaining)) }
                                td { (if s.failed { "FAILED" } else { "in service" }) }
                            }
                        }
                    }
                }
            }
        }
        .into_string(),
    )
}

/// A namenode as the status page shows it.
fn namenode_state(st: crate::namenode_link::LinkStatus, highest_term: u64) -> &'static str {
    match (st.registered, st.active) {
        (false, _) => "unknown",
        (true, false) => "standby",
        (true, true) if st.term < highest_term => "deposed (older term)",
        (true, true) => "active",
    }
}
