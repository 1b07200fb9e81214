//! The HTTP endpoints: `/metrics`, `/healthz`, `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use super::{describe, Health};
use crate::error::{Error, Result};

#[derive(Clone)]
struct AppState {
    metrics: PrometheusHandle,
    health: Arc<Health>,
}

/// Installs the metrics recorder and serves the endpoints on `addr` until
/// `shutdown`. Returns the address actually bound (for port 0).
pub async fn serve(
    addr: SocketAddr,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> Result<SocketAddr> {
    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| Error::Config(format!("cannot install the metrics recorder: {e}")))?;
    describe();
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        Error::Config(format!(
            "cannot listen on --metrics-addr {addr}: {e}. Choose a free address, or an empty value to turn metrics off"
        ))
    })?;
    let bound = listener.local_addr().unwrap_or(addr);
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, health });
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::warn!("the metrics endpoint stopped: {e}");
        }
    });
    tracing::info!("metrics on http://{bound}/metrics, health on /healthz and /readyz");
    Ok(bound)
}

async fn render_metrics(State(state): State<AppState>) -> String {
    super::health_gauges(&state.health);
    state.metrics.run_upkeep();
    state.metrics.render()
}

async fn healthz(State(state): State<AppState>) -> (StatusCode, String) {
    let code = if state.health.is_healthy() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, state.health.describe())
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, String) {
    let code = if state.health.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, state.health.describe())
}
