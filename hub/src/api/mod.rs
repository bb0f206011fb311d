//! The HTTP API the CLI (and anything else) uses. JSON in and out; errors are
//! `{"error": "..."}` with a status code that says whose fault it was.

pub mod types;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use wasmfleet_proto::Digest;

use crate::controller::{ControllerError, ControllerHandle};
use crate::store::{BlobError, BlobStore, StoreError};
use types::{ApplyRequest, ApplyResponse, ErrorBody};

/// Largest module upload.
pub const MAX_MODULE_BYTES: usize = 64 << 20;

/// Shared by every handler.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The single writer (its changes' publications leave in commit order).
    pub controller: ControllerHandle,
    /// Module store.
    pub blobs: BlobStore,
}

/// Milliseconds since the Unix epoch (the API is an I/O edge: it may read the clock).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// An error response.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

impl From<ControllerError> for ApiError {
    fn from(e: ControllerError) -> Self {
        let status = match &e {
            ControllerError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ControllerError::NotFound(_) => StatusCode::NOT_FOUND,
            ControllerError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError(status, e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
}

impl From<BlobError> for ApiError {
    fn from(e: BlobError) -> Self {
        let status = match &e {
            BlobError::Io { .. } => StatusCode::INSUFFICIENT_STORAGE,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError(status, e.to_string())
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The API's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/nodes", get(list_nodes))
        .route("/v1/deployments", get(list_deployments))
        .route(
            "/v1/deployments/{name}",
            get(get_deployment).put(apply).delete(delete),
        )
        .route("/v1/deployments/{name}/events", get(deployment_events))
        .route("/v1/deployments/{name}/logs", get(logs))
        .route("/v1/workloads", get(list_workloads))
        .route("/v1/events", get(events))
        .route(
            "/v1/blobs/{digest}",
            get(get_blob).head(head_blob).put(put_blob),
        )
        .layer(DefaultBodyLimit::max(MAX_MODULE_BYTES))
        .with_state(state)
}

async fn list_nodes(State(s): State<AppState>) -> Json<Vec<types::NodeView>> {
    Json(s.controller.read(|c| c.node_views()))
}

async fn list_deployments(State(s): State<AppState>) -> Json<Vec<types::DeploymentView>> {
    Json(s.controller.read(|c| c.deployment_views()))
}

async fn get_deployment(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<types::DeploymentView>> {
    s.controller
        .read(|c| c.deployment_views())
        .into_iter()
        .find(|d| d.name == name)
        .map(Json)
        .ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                format!("deployment {name:?} not found"),
            )
        })
}

async fn apply(
    State(s): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<ApplyResponse>> {
    let req: ApplyRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("invalid apply request: {e}"),
        )
    })?;
    let digest = req
        .spec
        .digest()
        .map_err(|e| ApiError(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    match s.blobs.size(&digest) {
        None => {
            return Err(ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "spec.module: module sha256:{digest} has not been uploaded (PUT /v1/blobs/{digest})"
                ),
            ));
        }
        Some(size) if size != req.spec.module_size => {
            return Err(ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "spec.moduleSize: {} does not match the stored module's {size} bytes",
                    req.spec.module_size
                ),
            ));
        }
        Some(_) => {}
    }
    let (outcome, generation) = s.controller.change(|c| {
        let (outcome, generation, publish) = c.apply(&name, req.spec, now_ms())?;
        Ok::<_, ControllerError>(((outcome, generation), publish))
    })?;
    Ok(Json(ApplyResponse {
        name,
        outcome,
        generation,
    }))
}

async fn delete(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    s.controller
        .change(|c| c.delete(&name, now_ms()).map(|publish| ((), publish)))?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct WorkloadQuery {
    deployment: Option<String>,
}

async fn list_workloads(
    State(s): State<AppState>,
    Query(q): Query<WorkloadQuery>,
) -> Json<Vec<types::WorkloadView>> {
    Json(
        s.controller
            .read(|c| c.workload_views(q.deployment.as_deref())),
    )
}

#[derive(Deserialize)]
struct EventQuery {
    kind: Option<String>,
    name: Option<String>,
    limit: Option<u32>,
}

async fn events(
    State(s): State<AppState>,
    Query(q): Query<EventQuery>,
) -> ApiResult<Json<Vec<types::Event>>> {
    let object = q.kind.as_deref().zip(q.name.as_deref());
    Ok(Json(s.controller.read(|c| {
        c.events(object, q.limit.unwrap_or(100).min(10_000))
    })?))
}

async fn deployment_events(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<EventQuery>,
) -> ApiResult<Json<Vec<types::Event>>> {
    let limit = q.limit.unwrap_or(50).min(10_000);
    Ok(Json(
        s.controller.read(|c| c.deployment_events(&name, limit))?,
    ))
}

#[derive(Deserialize)]
struct LogQuery {
    after: Option<u64>,
    limit: Option<u32>,
}

async fn logs(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Json<Vec<types::LogRecord>>> {
    let limit = q.limit.unwrap_or(100).min(10_000);
    s.controller.read(|c| {
        if !c.has_deployment(&name) && q.after.is_none() {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("deployment {name:?} not found"),
            ));
        }
        Ok(Json(c.logs(&name, q.after, limit)?))
    })
}

fn parse_digest(text: &str) -> ApiResult<Digest> {
    text.parse().map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("invalid digest {text:?}: {e}"),
        )
    })
}

async fn head_blob(State(s): State<AppState>, Path(digest): Path<String>) -> ApiResult<StatusCode> {
    let digest = parse_digest(&digest)?;
    Ok(if s.blobs.size(&digest).is_some() {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    })
}

async fn get_blob(State(s): State<AppState>, Path(digest): Path<String>) -> ApiResult<Vec<u8>> {
    let digest = parse_digest(&digest)?;
    s.blobs.read(&digest)?.ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("module sha256:{digest} not found"),
        )
    })
}

async fn put_blob(
    State(s): State<AppState>,
    Path(digest): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let digest = parse_digest(&digest)?;
    let blobs = s.blobs.clone();
    tokio::task::spawn_blocking(move || blobs.put(&digest, &body))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(StatusCode::CREATED)
}
