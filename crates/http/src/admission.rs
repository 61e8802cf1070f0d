//! Kubernetes admission webhooks: `POST /admission/validate` and `POST /admission/mutate` take an
//! `AdmissionReview` (`admission.k8s.io/v1`) of a Pod or of a Deployment, StatefulSet, DaemonSet,
//! ReplicaSet, Job or CronJob, and answer with the same review: allowed or refused with the
//! policy's message, dry-run denials as `warnings`, and — from `mutate` — a JSONPatch that names
//! each image by the gateway, pinned to its digest (`core::admission` decides). The API server
//! authenticates with the bearer token of `[admission] token_file`; anything else is a 401. A
//! review that is not one (bad JSON, another API version, no `uid`) is a 400, so the API server
//! refuses the object under `failurePolicy: Fail`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use portcullis_core::admission::Review;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::{Credentials, credentials};

type St = State<Arc<AppState>>;

/// The largest review read (the API server sends at most about 3 MiB).
const MAX_REVIEW_BYTES: usize = 4 << 20;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admission/validate", post(validate))
        .route("/admission/mutate", post(mutate))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_REVIEW_BYTES))
}

async fn validate(st: St, headers: HeaderMap, body: Bytes) -> Response {
    answer(st, headers, body, false).await
}

async fn mutate(st: St, headers: HeaderMap, body: Bytes) -> Response {
    answer(st, headers, body, true).await
}

fn refused(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

/// Where a kind keeps its pod spec.
fn pod_spec(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "Pod" => "/spec",
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" | "ReplicationController" => {
            "/spec/template/spec"
        }
        "CronJob" => "/spec/jobTemplate/spec/template/spec",
        _ => return None,
    })
}

/// Constant-time equality of two secrets.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn answer(State(st): St, headers: HeaderMap, body: Bytes, mutate: bool) -> Response {
    if !st.admission.enabled() {
        return refused(StatusCode::NOT_FOUND, "admission reviews are not answered here: set [admission] issuer");
    }
    let presented = match credentials(&headers) {
        Ok(Credentials::Bearer(t)) => t,
        _ => return refused(StatusCode::UNAUTHORIZED, "the API server authenticates with its bearer token"),
    };
    if !st.admission_token.as_deref().is_some_and(|t| same(t.as_bytes(), presented.as_bytes())) {
        return refused(StatusCode::UNAUTHORIZED, "the bearer token is not the admission token");
    }
    let review: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return refused(StatusCode::BAD_REQUEST, format!("not an AdmissionReview: {e}")),
    };
    if review["apiVersion"] != "admission.k8s.io/v1" || review["kind"] != "AdmissionReview" {
        return refused(StatusCode::BAD_REQUEST, "only admission.k8s.io/v1 AdmissionReview is answered");
    }
    let req = &review["request"];
    let Some(uid) = req["uid"].as_str().filter(|u| !u.is_empty()) else {
        return refused(StatusCode::BAD_REQUEST, "the review has no request.uid");
    };
    let respond = |response: Value| {
        let mut response = response;
        response["uid"] = uid.into();
        axum::Json(json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response }))
            .into_response()
    };
    let deny = |message: String| json!({ "allowed": false, "status": { "code": 403, "message": message } });
    match req["operation"].as_str() {
        Some("CREATE" | "UPDATE") => {}
        // Nothing new runs: nothing to decide.
        Some("DELETE" | "CONNECT") => return respond(json!({ "allowed": true })),
        other => return refused(StatusCode::BAD_REQUEST, format!("unknown operation {other:?}")),
    }
    let kind = req["kind"]["kind"].as_str().unwrap_or_default().to_owned();
    let Some(base) = pod_spec(&kind) else {
        return respond(deny(format!(
            "portcullis reviews Pods and the pod templates of Deployments, StatefulSets, DaemonSets, ReplicaSets, \
             Jobs and CronJobs; {kind:?} is none of them"
        )));
    };
    let object = &req["object"];
    let Some(spec) = object.pointer(base).filter(|s| s.is_object()) else {
        return respond(deny(format!("the {kind} has no pod spec at {base}")));
    };
    let mut images = Vec::new();
    for field in ["initContainers", "containers", "ephemeralContainers"] {
        for (i, c) in spec[field].as_array().into_iter().flatten().enumerate() {
            let Some(image) = c["image"].as_str() else {
                return respond(deny(format!("{base}/{field}/{i} names no image")));
            };
            images.push((format!("{base}/{field}/{i}/image"), image.to_owned()));
        }
    }
    let meta = &object["metadata"];
    let r = Review {
        namespace: req["namespace"].as_str().or(meta["namespace"].as_str()).unwrap_or("default").to_owned(),
        service_account: spec["serviceAccountName"].as_str().filter(|s| !s.is_empty()).unwrap_or("default").to_owned(),
        object: meta["name"].as_str().or(meta["generateName"].as_str()).unwrap_or_default().to_owned(),
        kind,
        images,
    };
    match st.admission.review(&r, mutate).await {
        Ok(v) if !v.allowed => respond(deny(v.message.unwrap_or_default())),
        Ok(v) => {
            let mut response = json!({ "allowed": true });
            if !v.warnings.is_empty() {
                response["warnings"] = json!(v.warnings);
            }
            if !v.rewrites.is_empty() {
                let patch: Vec<Value> = v
                    .rewrites
                    .iter()
                    .map(|(path, image)| json!({ "op": "replace", "path": path, "value": image }))
                    .collect();
                let patch = serde_json::to_vec(&patch).unwrap_or_default();
                response["patchType"] = "JSONPatch".into();
                response["patch"] = base64::engine::general_purpose::STANDARD.encode(patch).into();
            }
            respond(response)
        }
        Err(e) if e.is_internal() => {
            tracing::error!(error = %e, "admission review failed");
            refused(StatusCode::SERVICE_UNAVAILABLE, "the review could not be decided now")
        }
        Err(e) => respond(deny(e.to_string())),
    }
}
