//! Probes and metrics on the admin listener: Prometheus `/metrics`, `/livez` and `/readyz`, on
//! their own port so that scraping and probing never share a listener (or its limits) with
//! codec traffic. The admin API ([`super::admin_api`]) may be merged onto the same listener.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use http::{HeaderValue, StatusCode, header};

use super::AppState;

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    state.metrics.set_ready(state.readiness.is_ready());
    text(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        state.metrics.render().await,
    )
}

async fn healthz() -> Response {
    text(
        StatusCode::OK,
        "text/plain; charset=utf-8",
        "ok\n".to_owned(),
    )
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match state.readiness.reason() {
        None => text(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "ready\n".to_owned(),
        ),
        Some(reason) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            format!("not ready: {reason}\n"),
        ),
    }
}

/// The admin router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/livez", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Arc::new(state))
}
