//! The datanode's HTTP port: health and a short status.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;

use crate::context::DatanodeContext;

pub fn router(ctx: Arc<DatanodeContext>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(ctx)
}

async fn readyz(State(ctx): State<Arc<DatanodeContext>>) -> (axum::http::StatusCode, String) {
    let registered = !ctx.block_key.read().is_empty();
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
