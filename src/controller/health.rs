//! `/healthz`, `/readyz` and `/metrics`. Readiness means "this process is serving and not
//! shutting down", never "this replica leads": a rolling update would otherwise deadlock, the
//! new pod waiting for a lease that the old one only releases once the new one is ready.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::metrics::Metrics;
use super::shutdown::Shutdown;

/// What the probes report.
#[derive(Default)]
pub struct Health {
    ready: AtomicBool,
}

impl Health {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

fn route(path: &str, health: &Health, metrics: &Metrics) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    match path {
        "/healthz" | "/livez" => respond(StatusCode::OK, TEXT, "ok\n".into()),
        "/readyz" if health.is_ready() => respond(StatusCode::OK, TEXT, "ready\n".into()),
        "/readyz" => respond(StatusCode::SERVICE_UNAVAILABLE, TEXT, "not ready\n".into()),
        "/metrics" => respond(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.render(),
        ),
        _ => respond(StatusCode::NOT_FOUND, TEXT, "not found\n".into()),
    }
}

/// Binds `addr` and serves until shutdown. Returns the bound address (port 0 picks one).
pub async fn serve(
    addr: SocketAddr,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        tracing::warn!(%error, "health server: accept failed");
                        continue;
                    }
                },
                () = shutdown.wait() => return,
            };
            let (health, metrics) = (health.clone(), metrics.clone());
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let response = route(request.uri().path(), &health, &metrics);
                    async move { Ok::<_, Infallible>(response) }
                });
                if let Err(error) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(%error, "health server: connection ended with an error");
                }
            });
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_the_flag_and_metrics_are_openmetrics() {
        let (health, metrics) = (Health::default(), Metrics::default());
        metrics.observe_reconcile("grant", std::time::Duration::from_millis(3));
        metrics.observe_grant("ns/a", Some("Granted"));
        metrics.observe_grant("ns/b", Some("Granted"));
        metrics.observe_grant("ns/b", Some("NotAllowed"));
        metrics.observe_grant("ns/a", None);
        assert_eq!(route("/readyz", &health, &metrics).status(), 503);
        health.set_ready(true);
        assert_eq!(route("/readyz", &health, &metrics).status(), 200);
        assert_eq!(route("/healthz", &health, &metrics).status(), 200);
        assert_eq!(route("/nope", &health, &metrics).status(), 404);
        let text = metrics.render();
        assert!(
            text.contains("aws_access_operator_reconciles_total{controller=\"grant\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("aws_access_operator_grants{reason=\"Granted\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("aws_access_operator_grants{reason=\"NotAllowed\"} 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
