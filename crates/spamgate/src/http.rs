//! The optional HTTP listener: `/metrics` (OpenMetrics text, as prometheus-client
//! writes it, ending in `# EOF`) and `/health`.

use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use spamgate_app::metrics::Metrics;

/// The content type of what [`Metrics::encode`] writes (prometheus-client's text
/// encoder is OpenMetrics 1.0: `# EOF` last, `_total` counters).
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            OPENMETRICS,
                        )],
                        metrics.encode(),
                    )
                        .into_response()
                }
            }),
        )
        .route("/health", get(|| async { "ok\n" }))
}

pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    if let Ok(addr) = listener.local_addr() {
        info!("metrics on http://{addr}/metrics");
    }
    let result = axum::serve(listener, router(metrics))
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await;
    if let Err(e) = result {
        warn!("metrics listener failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn metrics_say_the_format_their_body_is_in() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = watch::channel(false);
        let server = tokio::spawn(serve(listener, Arc::new(Metrics::new()), stopped));
        let response = get(addr, "/metrics").await;
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("content-type: {OPENMETRICS}").to_ascii_lowercase()),
            "{head}"
        );
        assert!(
            body.trim_end().ends_with("# EOF"),
            "an OpenMetrics body: {body}"
        );
        assert!(get(addr, "/health").await.ends_with("ok\n"));
        stop.send(true).unwrap();
        server.await.unwrap();
    }
}
