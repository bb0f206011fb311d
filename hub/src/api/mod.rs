//! The HTTP API the CLI (and anything else) uses. JSON in and out; errors are
//! `{"error": "..."}` with a status code that says whose fault it was.
//!
//! Handlers never hold the controller's lock while they read: lists come from the latest
//! [`crate::controller::FleetSnapshot`], events and logs from their own database connections
//! (on the blocking pool). Changes go through [`ControllerHandle::change`], which runs on the
//! blocking pool too, so no async worker ever waits for SQLite or the scheduler.

pub mod types;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use http_body_util::BodyExt;
use serde::Deserialize;
use tokio::sync::Semaphore;
use wasmfleet_common::engine::Checker;

use crate::artifacts::Artifacts;
use wasmfleet_proto::Digest;

use crate::clock::now_ms;
use crate::controller::handle::Visibility;
use crate::controller::{ControllerError, ControllerHandle};
use crate::model::capabilities::check_module_capabilities;
use crate::store::blobs::Stored;
use crate::store::{BlobError, BlobStore, EventReader, LogReader, StoreError};
use types::{ApplyRequest, ApplyResponse, ErrorBody, SchedulingChange};

/// Largest module upload.
pub const MAX_MODULE_BYTES: usize = 64 << 20;

/// Uploads checked at once (checking compiles the module, a CPU- and memory-heavy step);
/// further uploads wait their turn.
pub const CONCURRENT_UPLOADS: usize = 2;

/// Shared by every handler.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The single writer (its changes' publications leave in commit order).
    pub controller: ControllerHandle,
    /// Module store.
    pub blobs: BlobStore,
    /// The agents' admission check for modules.
    pub checker: Arc<Checker>,
    /// Compiles modules for the fleet's engine profiles.
    pub artifacts: Artifacts,
    /// Event queries.
    pub events: Arc<EventReader>,
    /// Log queries.
    pub logs: Arc<LogReader>,
    /// Bounds concurrent uploads.
    pub uploads: Arc<Semaphore>,
    /// When each node was last heard (`get nodes`' LAST SEEN).
    pub liveness: Arc<std::sync::Mutex<crate::reconcile::liveness::Liveness>>,
}

/// Runs a blocking read off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(ApiError::from)
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
            BlobError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
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
        .route("/v1/nodes/{name}/scheduling", put(set_scheduling))
        .route("/v1/deployments", get(list_deployments))
        .route(
            "/v1/deployments/{name}",
            get(get_deployment).put(apply).delete(delete),
        )
        .route("/v1/deployments/{name}/events", get(deployment_events))
        .route("/v1/deployments/{name}/rollout", get(rollout_status))
        .route(
            "/v1/deployments/{name}/rollout/{action}",
            put(rollout_action),
        )
        .route("/v1/deployments/{name}/revisions", get(rollout_history))
        .route("/v1/deployments/{name}/logs", get(logs))
        .route("/v1/workloads", get(list_workloads))
        .route("/v1/events", get(events))
        .route(
            "/v1/blobs/{digest}",
            get(get_blob).head(head_blob).put(put_blob),
        )
        // Uploads stream to disk and enforce MAX_MODULE_BYTES themselves.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// Builds a listing and its JSON off the async workers. `get nodes` of 100,000 nodes is
/// 40 MB of JSON and two seconds of CPU, and those workers also carry the MQTT link: on one
/// of them, heartbeats waited behind it and nodes flapped NotReady.
async fn listing<T: serde::Serialize + Send + 'static>(
    build: impl FnOnce() -> T + Send + 'static,
) -> ApiResult<Response> {
    let internal = |e: String| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e);
    let body = tokio::task::spawn_blocking(move || serde_json::to_vec(&build()))
        .await
        .map_err(|e| internal(e.to_string()))?
        .map_err(|e| internal(e.to_string()))?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

async fn list_nodes(State(s): State<AppState>) -> ApiResult<Response> {
    listing(move || {
        // Locked per node, not across the listing: heartbeats update the same table.
        let last_seen = |n: &str| {
            s.liveness
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .last_seen(n)
        };
        s.controller.snapshot().node_views(last_seen)
    })
    .await
}

async fn set_scheduling(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(body): Json<SchedulingChange>,
) -> ApiResult<Json<SchedulingChange>> {
    let scheduling = body.scheduling;
    let moved = s
        .controller
        .change(Visibility::Now, move |c| {
            c.set_scheduling(&name, scheduling, now_ms())
        })
        .await?;
    Ok(Json(SchedulingChange {
        scheduling: body.scheduling,
        moved,
    }))
}

fn no_deployment(name: &str) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!("deployment {name:?} not found"),
    )
}

async fn rollout_status(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<types::RolloutView>> {
    // Read through the writer's snapshot refresh so a status right after an apply sees it.
    s.controller
        .snapshot()
        .rollout_view(&name)
        .map(Json)
        .ok_or_else(|| no_deployment(&name))
}

async fn rollout_history(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<types::RevisionView>>> {
    s.controller
        .snapshot()
        .revision_views(&name)
        .map(Json)
        .ok_or_else(|| no_deployment(&name))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UndoQuery {
    to_revision: Option<u64>,
}

async fn rollout_action(
    State(s): State<AppState>,
    Path((name, action)): Path<(String, String)>,
    Query(q): Query<UndoQuery>,
) -> ApiResult<Json<types::RolloutView>> {
    let target = name.clone();
    match action.as_str() {
        "pause" | "resume" => {
            let pause = action == "pause";
            s.controller
                .change(Visibility::Now, move |c| {
                    c.pause_rollout(&target, pause, now_ms()).map(|p| ((), p))
                })
                .await?;
        }
        "undo" => {
            s.controller
                .change(Visibility::Now, move |c| {
                    c.undo_rollout(&target, q.to_revision, now_ms())
                        .map(|(_, p)| ((), p))
                })
                .await?;
        }
        other => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("no rollout action {other:?}: expected pause, resume or undo"),
            ));
        }
    }
    rollout_status(State(s), Path(name)).await
}

async fn list_deployments(State(s): State<AppState>) -> ApiResult<Response> {
    listing(move || s.controller.snapshot().deployment_views()).await
}

async fn get_deployment(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<types::DeploymentView>> {
    s.controller
        .snapshot()
        .deployment_views()
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
    body: axum::body::Bytes,
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
    // A module importing host functions the deployment is not granted would never run:
    // refused now, naming the function and the manifest field that grants it.
    let (blobs, caps) = (s.blobs.clone(), req.spec.capabilities.clone());
    tokio::task::spawn_blocking(move || {
        let module = blobs
            .read_all(&digest)
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .unwrap_or_default();
        check_module_capabilities(&module, &caps).map_err(|e| {
            ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("spec.module: {e}"),
            )
        })
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    // Compile for every engine profile of the fleet first: a module that does not compile
    // for one is refused now, naming it, rather than failing on those devices later.
    let (built, refusal) = s
        .artifacts
        .build_for_fleet(&s.controller.snapshot(), digest)
        .await;
    if !built.is_empty() {
        s.controller
            .change(Visibility::Soon, move |c| {
                let publish = c.record_artifacts(built, now_ms())?;
                Ok::<_, ControllerError>(((), publish))
            })
            .await?;
    }
    if let Some(refusal) = refusal {
        return Err(ApiError(StatusCode::UNPROCESSABLE_ENTITY, refusal));
    }
    let deployment = name.clone();
    let (outcome, generation) = s
        .controller
        .change(Visibility::Now, move |c| {
            let (outcome, generation, publish) = c.apply(&deployment, req.spec, now_ms())?;
            Ok::<_, ControllerError>(((outcome, generation), publish))
        })
        .await?;
    Ok(Json(ApplyResponse {
        name,
        outcome,
        generation,
    }))
}

async fn delete(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    s.controller
        .change(Visibility::Now, move |c| {
            c.delete(&name, now_ms()).map(|publish| ((), publish))
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct WorkloadQuery {
    deployment: Option<String>,
}

async fn list_workloads(
    State(s): State<AppState>,
    Query(q): Query<WorkloadQuery>,
) -> ApiResult<Response> {
    listing(move || {
        s.controller
            .snapshot()
            .workload_views(q.deployment.as_deref())
    })
    .await
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
    let limit = q.limit.unwrap_or(100).min(10_000);
    let events = blocking(move || {
        let object = q.kind.as_deref().zip(q.name.as_deref());
        s.events.events(object, limit)
    })
    .await?;
    Ok(Json(events))
}

async fn deployment_events(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<EventQuery>,
) -> ApiResult<Json<Vec<types::Event>>> {
    let limit = q.limit.unwrap_or(50).min(10_000);
    let events = blocking(move || s.events.deployment_events(&name, limit)).await?;
    Ok(Json(events))
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
    if q.after.is_none() && !s.controller.snapshot().deployments.contains_key(&name) {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("deployment {name:?} not found"),
        ));
    }
    let lines = blocking(move || s.logs.logs(&name, q.after, limit)).await?;
    Ok(Json(lines))
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

async fn get_blob(State(s): State<AppState>, Path(digest): Path<String>) -> ApiResult<Response> {
    let digest = parse_digest(&digest)?;
    let file = s.blobs.open_blob(&digest)?.ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("module sha256:{digest} not found"),
        )
    })?;
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
    Ok(Body::from_stream(stream).into_response())
}

/// `PUT /v1/blobs/{digest}`: streams the body to a temporary file while hashing it, then (at
/// most [`CONCURRENT_UPLOADS`] at a time) checks it the way agents will run it and stores it.
/// Idempotent: a module already stored answers 200, a new one 201.
async fn put_blob(
    State(s): State<AppState>,
    Path(digest): Path<String>,
    body: Body,
) -> ApiResult<StatusCode> {
    let digest = parse_digest(&digest)?;
    if s.blobs.size(&digest).is_some() {
        return Ok(StatusCode::OK);
    }
    let mut upload = s.blobs.begin(MAX_MODULE_BYTES as u64)?;
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("reading the upload: {e}")))?;
        if let Ok(data) = frame.into_data() {
            upload.write(&data)?;
        }
    }
    let _permit = s
        .uploads
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let (blobs, checker, artifacts) = (s.blobs.clone(), s.checker.clone(), s.artifacts.clone());
    let (stored, host_artifact) = tokio::task::spawn_blocking(move || {
        let mut compiled = None;
        let stored = blobs.finish(upload, &digest, |bytes| {
            let module = checker.check(bytes).map_err(|e| e.to_string())?;
            compiled = module.serialize().ok();
            Ok(())
        });
        // The check compiled for the hub's architecture: that is the artifact for nodes of
        // the hub's own profile, at no further cost.
        let host = compiled.and_then(|bytes| artifacts.keep_host_artifact(digest, &bytes));
        (stored, host)
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let stored = stored?;
    if let Some(entry) = host_artifact {
        s.controller
            .change(Visibility::Soon, move |c| {
                let publish = c.record_artifacts(vec![entry], now_ms())?;
                Ok::<_, ControllerError>(((), publish))
            })
            .await?;
    }
    Ok(match stored {
        Stored::Created => StatusCode::CREATED,
        Stored::Existed => StatusCode::OK,
    })
}
