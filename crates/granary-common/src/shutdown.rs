//! Graceful shutdown: SIGTERM or SIGINT cancels the root token.

use tokio_util::sync::CancellationToken;

/// Cancels `token` on the first SIGTERM or SIGINT.
///
/// The handlers are installed before this returns (only the wait is
/// spawned): a SIGTERM that arrives as soon as the daemon's ports are bound
/// must shut it down gracefully, not kill it with the default action.
/// Call it from inside the runtime.
pub fn cancel_on_signal(token: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::error!("cannot install signal handlers; shutdown only by kill -9");
        return;
    };
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
            _ = int.recv() => tracing::info!(signal = "SIGINT", "shutting down"),
            _ = token.cancelled() => return,
        }
        token.cancel();
    });
}
