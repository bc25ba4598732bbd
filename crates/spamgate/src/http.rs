//! The optional HTTP listener: `/metrics` and `/health`. `/metrics` answers OpenMetrics
//! text (ending in `# EOF`) to a scraper that accepts it (Prometheus does), and
//! Prometheus text format 0.0.4 otherwise (curl, `promtool check metrics`); the content
//! type always says which the body is.

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;

use spamgate_app::metrics::Metrics;

/// The content type of what [`Metrics::encode`] writes (prometheus-client's text
/// encoder is OpenMetrics 1.0: `# EOF` last, `_total` counters).
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of [`Metrics::encode_text`].
pub const TEXT_0_0_4: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The body and its content type for a request with these headers.
fn exposition(
    metrics: &Metrics,
    headers: &HeaderMap,
) -> ([(header::HeaderName, &'static str); 1], String) {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if openmetrics {
        ([(header::CONTENT_TYPE, OPENMETRICS)], metrics.encode())
    } else {
        ([(header::CONTENT_TYPE, TEXT_0_0_4)], metrics.encode_text())
    }
}

pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move |headers: HeaderMap| {
                let metrics = metrics.clone();
                async move { exposition(&metrics, &headers).into_response() }
            }),
        )
        .route("/health", get(|| async { "ok\n" }))
}

/// Serves until `shutdown`, each connection bounded like the admin listener's (a
/// scraper needs few connections; a slow or silent client must not hold one).
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, shutdown: watch::Receiver<bool>) {
    if let Ok(addr) = listener.local_addr() {
        info!("metrics on http://{addr}/metrics");
    }
    let limits = spamgate_admin::ListenerLimits {
        max_connections: 64,
        ..spamgate_admin::ListenerLimits::default()
    };
    spamgate_admin::listener::serve_connections(listener, router(metrics), limits, shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: std::net::SocketAddr, path: &str, accept: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{accept}Connection: close\r\n\r\n");
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
        // What Prometheus sends: OpenMetrics first.
        let prometheus = "Accept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n";
        for (accept, content_type, openmetrics) in [
            (prometheus, OPENMETRICS, true),
            ("", TEXT_0_0_4, false),
            ("Accept: text/plain\r\n", TEXT_0_0_4, false),
        ] {
            let response = get(addr, "/metrics", accept).await;
            let (head, body) = response.split_once("\r\n\r\n").unwrap();
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            assert!(
                head.to_ascii_lowercase()
                    .contains(&format!("content-type: {content_type}").to_ascii_lowercase()),
                "{accept}: {head}"
            );
            assert_eq!(body.trim_end().ends_with("# EOF"), openmetrics, "{body}");
            // Counter families are named with _total only in text 0.0.4.
            assert_eq!(
                body.contains("# TYPE spamgate_store_errors_total counter"),
                !openmetrics,
                "{body}"
            );
            assert!(body.contains("spamgate_store_errors_total 0"), "{body}");
            assert!(body.contains("spamgate_build_info{version="), "{body}");
        }
        assert!(get(addr, "/health", "").await.ends_with("ok\n"));
        stop.send(true).unwrap();
        server.await.unwrap();
    }
}
