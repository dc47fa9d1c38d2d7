//! The namenode's HTTP port: health and readiness probes, Prometheus
//! metrics, the web UI, and WebHDFS.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;

use crate::metrics::NamenodeMetrics;
use crate::state::NamenodeState;

pub fn router(
    state: Arc<NamenodeState>,
    metrics: Arc<NamenodeMetrics>,
    activity: Arc<crate::activity::Activity>,
    rpc_addr: String,
) -> Router {
    let scrape = {
        let (state, metrics) = (state.clone(), metrics);
        move || async move {
            (
                [(
                    axum::http::header::CONTENT_TYPE,
                    granary_common::metrics::CONTENT_TYPE,
                )],
                metrics.render(&state),
            )
        }
    };
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state.clone())
        .route("/metrics", get(scrape))
        .merge(crate::web_ui::routes(state.clone(), activity))
        .merge(crate::webhdfs::routes(state, rpc_addr))
}

async fn readyz(State(st): State<Arc<NamenodeState>>) -> String {
    format!(
        "ready\ncluster_id {}\nuptime_secs {}\ndatanodes {}\n",
        st.cluster_id(),
        st.started().elapsed().as_secs(),
        st.datanodes().report().len()
    )
}
