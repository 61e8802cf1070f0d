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
use serde::{Deserialize, Serialize};
use serde_json::json;
use serde_json::value::RawValue;

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

/// The review as the API server sends it: only what is decided on is read (the rest of the
/// object is skipped, not built), and the object only once its kind is known.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Incoming<'a> {
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(borrow)]
    request: Option<Request<'a>>,
}

#[derive(Deserialize)]
struct Request<'a> {
    uid: Option<String>,
    kind: Option<Kind>,
    namespace: Option<String>,
    operation: Option<String>,
    #[serde(borrow)]
    object: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Kind {
    kind: Option<String>,
}

/// A Pod, or a workload whose pod template is at `spec.template` (`spec.jobTemplate` for a
/// CronJob).
#[derive(Deserialize)]
struct Object {
    #[serde(default)]
    metadata: Meta,
    spec: Option<Spec>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Meta {
    name: Option<String>,
    generate_name: Option<String>,
    namespace: Option<String>,
}

/// A pod spec, or the spec of what holds one (their fields do not overlap).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    init_containers: Option<Vec<Container>>,
    containers: Option<Vec<Container>>,
    ephemeral_containers: Option<Vec<Container>>,
    service_account_name: Option<String>,
    template: Option<Box<Template>>,
    job_template: Option<Box<Template>>,
}

#[derive(Deserialize)]
struct Template {
    spec: Option<Spec>,
}

#[derive(Deserialize)]
struct Container {
    image: Option<String>,
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

impl Spec {
    /// The pod spec in this object's spec, at `pod_spec(kind)`.
    fn pod(self, kind: &str) -> Option<Spec> {
        let template = |t: Option<Box<Template>>| t.and_then(|t| t.spec);
        match kind {
            "Pod" => Some(self),
            "CronJob" => template(template(self.job_template)?.template),
            _ => template(self.template),
        }
    }
}

/// The answer, as the API server reads it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Outgoing<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: Answer<'a>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Answer<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Status>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
}

#[derive(Serialize)]
struct Status {
    code: u16,
    message: String,
}

#[derive(Serialize)]
struct Patch<'a> {
    op: &'static str,
    path: &'a str,
    value: &'a str,
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
    let review: Incoming = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return refused(StatusCode::BAD_REQUEST, format!("not an AdmissionReview: {e}")),
    };
    if review.api_version.as_deref() != Some("admission.k8s.io/v1") || review.kind.as_deref() != Some("AdmissionReview")
    {
        return refused(StatusCode::BAD_REQUEST, "only admission.k8s.io/v1 AdmissionReview is answered");
    }
    let Some(req) = review.request else {
        return refused(StatusCode::BAD_REQUEST, "the review has no request");
    };
    let Some(uid) = req.uid.as_deref().filter(|u| !u.is_empty()) else {
        return refused(StatusCode::BAD_REQUEST, "the review has no request.uid");
    };
    let respond = |a: Answer| {
        let response = Answer { uid, ..a };
        axum::Json(Outgoing { api_version: "admission.k8s.io/v1", kind: "AdmissionReview", response }).into_response()
    };
    let deny = |message: String| Answer { status: Some(Status { code: 403, message }), ..Answer::default() };
    match req.operation.as_deref() {
        Some("CREATE" | "UPDATE") => {}
        // Nothing new runs: nothing to decide.
        Some("DELETE" | "CONNECT") => return respond(Answer { allowed: true, ..Answer::default() }),
        other => return refused(StatusCode::BAD_REQUEST, format!("unknown operation {other:?}")),
    }
    let kind = req.kind.and_then(|k| k.kind).unwrap_or_default();
    let Some(base) = pod_spec(&kind) else {
        return respond(deny(format!(
            "portcullis reviews Pods and the pod templates of Deployments, StatefulSets, DaemonSets, ReplicaSets, \
             Jobs and CronJobs; {kind:?} is none of them"
        )));
    };
    let object: Object = match req.object.map(|o| serde_json::from_str(o.get())) {
        Some(Ok(o)) => o,
        Some(Err(e)) => return refused(StatusCode::BAD_REQUEST, format!("request.object is not a {kind}: {e}")),
        None => return refused(StatusCode::BAD_REQUEST, "the review has no request.object"),
    };
    let Some(spec) = object.spec.and_then(|s| s.pod(&kind)) else {
        return respond(deny(format!("the {kind} has no pod spec at {base}")));
    };
    let mut images = Vec::new();
    for (field, list) in [
        ("initContainers", spec.init_containers),
        ("containers", spec.containers),
        ("ephemeralContainers", spec.ephemeral_containers),
    ] {
        for (i, c) in list.into_iter().flatten().enumerate() {
            let Some(image) = c.image else {
                return respond(deny(format!("{base}/{field}/{i} names no image")));
            };
            images.push((format!("{base}/{field}/{i}/image"), image));
        }
    }
    let meta = object.metadata;
    let r = Review {
        namespace: req.namespace.filter(|n| !n.is_empty()).or(meta.namespace).unwrap_or_else(|| "default".into()),
        service_account: spec.service_account_name.filter(|s| !s.is_empty()).unwrap_or_else(|| "default".into()),
        object: meta.name.filter(|n| !n.is_empty()).or(meta.generate_name).unwrap_or_default(),
        kind,
        images,
    };
    match st.admission.review(&r, mutate).await {
        Ok(v) if !v.allowed => respond(deny(v.message.unwrap_or_default())),
        Ok(v) => {
            let mut answer = Answer { allowed: true, warnings: v.warnings, ..Answer::default() };
            if !v.rewrites.is_empty() {
                let patch: Vec<Patch> =
                    v.rewrites.iter().map(|(path, image)| Patch { op: "replace", path, value: image }).collect();
                let patch = serde_json::to_vec(&patch).unwrap_or_default();
                answer.patch_type = Some("JSONPatch");
                answer.patch = Some(base64::engine::general_purpose::STANDARD.encode(patch));
            }
            respond(answer)
        }
        Err(e) if e.is_internal() => {
            tracing::error!(error = %e, "admission review failed");
            refused(StatusCode::SERVICE_UNAVAILABLE, "the review could not be decided now")
        }
        Err(e) => respond(deny(e.to_string())),
    }
}
