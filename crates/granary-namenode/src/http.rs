//! The namenode's HTTP port: health and readiness probes.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;

use crate::state::NamenodeState;

pub fn router(state: Arc<NamenodeState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn readyz(State(st): State<Arc<NamenodeState>>) -> String {
    format!(
        "ready\ncluster_id {}\nuptime_secs {}\ndatanodes {}\n",
        st.cluster_id,
        st.started.elapsed().as_secs(),
        st.datanodes.report().len()
    )
}
