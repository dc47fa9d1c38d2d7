//! Prometheus metrics shared by the daemons: per-RPC counts and latency
//! (a tower layer on the gRPC server) and the text exposition for `/metrics`.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabel {
    pub method: String,
}

/// `granary_rpc_requests_total` and `granary_rpc_duration_seconds` by method.
pub struct RpcMetrics {
    requests: Family<MethodLabel, Counter>,
    duration: Family<MethodLabel, Histogram>,
}

impl RpcMetrics {
    pub fn register(registry: &mut Registry) -> Arc<Self> {
        let requests = Family::<MethodLabel, Counter>::default();
        // 50 µs to ~50 s.
        let duration = Family::<MethodLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.00005, 2.0, 20))
        });
        registry.register(
            "granary_rpc_requests",
            "gRPC calls served, by method",
            requests.clone(),
        );
        registry.register(
            "granary_rpc_duration_seconds",
            "Time to answer a gRPC call (to the response headers for streams), by method",
            duration.clone(),
        );
        Arc::new(Self { requests, duration })
    }

    fn observe(&self, method: String, secs: f64) {
        let l = MethodLabel { method };
        self.requests.get_or_create(&l).inc();
        self.duration.get_or_create(&l).observe(secs);
    }
}

/// The method name of a gRPC path, bounded so clients cannot mint labels.
fn method_of(path: &str) -> String {
    match path.strip_prefix("/granary.v1.").and_then(|p| p.split_once('/')) {
        Some((_, m)) if !m.is_empty() && m.len() <= 64 && m.chars().all(|c| c.is_ascii_alphanumeric()) => {
            m.to_string()
        }
        _ => "other".to_string(),
    }
}

/// Tower layer timing every call on a tonic server.
#[derive(Clone)]
pub struct RpcMetricsLayer(pub Arc<RpcMetrics>);

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RpcMetricsService {
            inner,
            m: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RpcMetricsService<S> {
    inner: S,
    m: Arc<RpcMetrics>,
}

impl<S, B, RB> tower::Service<http::Request<B>> for RpcMetricsService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>> + Send,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = method_of(req.uri().path());
        let m = self.m.clone();
        let start = Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let r = fut.await;
            // A method the server does not have is answered Unimplemented;
            // counting it under its own name would let any client mint labels.
            let unimplemented = r.as_ref().is_ok_and(|resp| {
                resp.headers()
                    .get(tonic::Status::GRPC_STATUS)
                    .is_some_and(|s| tonic::Code::from_bytes(s.as_bytes()) == tonic::Code::Unimplemented)
            });
            let method = if unimplemented {
                "other".to_string()
            } else {
                method
            };
            m.observe(method, start.elapsed().as_secs_f64());
            r
        })
    }
}

/// Registers `metric` under `name` and hands it back (metrics are shared
/// handles: the daemon keeps one, the registry another).
pub fn register<M>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M
where
    M: prometheus_client::registry::Metric + Clone,
{
    registry.register(name, help, metric.clone());
    metric
}

/// The registry in Prometheus text format, as `/metrics` serves it.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, registry) {
        tracing::error!(error = %e, "metrics encoding failed");
    }
    out
}

/// The content type Prometheus expects for [`encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_labels_are_bounded() {
        assert_eq!(method_of("/granary.v1.ClientProtocol/Mkdirs"), "Mkdirs");
        assert_eq!(method_of("/granary.v1.DataTransfer/ReadBlock"), "ReadBlock");
        assert_eq!(method_of("/evil/../x"), "other");
        assert_eq!(method_of("/granary.v1.X/a-b"), "other");
    }

    #[tokio::test]
    async fn calls_to_methods_the_server_lacks_share_one_label() {
        use tower::{Layer, Service};
        let mut r = Registry::default();
        let m = RpcMetrics::register(&mut r);
        let mut svc = RpcMetricsLayer(m).layer(tower::service_fn(|req: http::Request<()>| async move {
            let mut resp = http::Response::new(());
            if req.uri().path().ends_with("/Made0Up") {
                resp.headers_mut()
                    .insert("grpc-status", http::HeaderValue::from_static("12"));
            }
            Ok::<_, std::convert::Infallible>(resp)
        }));
        for path in [
            "/granary.v1.ClientProtocol/Mkdirs",
            "/granary.v1.ClientProtocol/Made0Up",
        ] {
            let req = http::Request::builder().uri(path).body(()).expect("request");
            svc.call(req).await.expect("answered");
        }
        let text = encode(&r);
        assert!(
            text.contains("granary_rpc_requests_total{method=\"Mkdirs\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("granary_rpc_requests_total{method=\"other\"} 1"),
            "{text}"
        );
        assert!(!text.contains("Made0Up"), "{text}");
    }

    #[test]
    fn observed_calls_are_exposed() {
        let mut r = Registry::default();
        let m = RpcMetrics::register(&mut r);
        m.observe("Mkdirs".into(), 0.001);
        m.observe("Mkdirs".into(), 0.002);
        let text = encode(&r);
        assert!(
            text.contains("granary_rpc_requests_total{method=\"Mkdirs\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("granary_rpc_duration_seconds_count{method=\"Mkdirs\"} 2"),
            "{text}"
        );
    }
}
