//! The stack's HTTP endpoints on one loopback listener:
//!
//! | route | what |
//! |---|---|
//! | `GET /ecs/credentials` | ECS task role credentials (`AWS_CONTAINER_CREDENTIALS_FULL_URI`) |
//! | `GET /pod-identity/credentials` | EKS Pod Identity: as ECS, but requires the `Authorization` value from `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` |
//! | `POST /` | STS `AssumeRoleWithWebIdentity` (EKS IRSA, `AWS_ENDPOINT_URL_STS`) |
//! | `GET /stats` | the counters as JSON |
//! | `POST /faults` | inject faults (JSON body, see [`FaultRequest`]) |
//!
//! Each credentials request issues fresh temporary credentials with the
//! configured lifetime and registers them with the front, which accepts them
//! until they expire.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::Rng;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::registry::KnownCredentials;
use crate::shared::Shared;

/// The role the ECS task role endpoint issues credentials for.
pub const ECS_ROLE_ARN: &str = "arn:aws:iam::000000000000:role/localstack-ecs-task";
/// The role the Pod Identity endpoint issues credentials for.
pub const POD_IDENTITY_ROLE_ARN: &str = "arn:aws:iam::000000000000:role/localstack-pod-identity";
/// The role STS lets the web identity assume (`AWS_ROLE_ARN`).
pub const IRSA_ROLE_ARN: &str = "arn:aws:iam::000000000000:role/localstack-irsa";

/// The body of `POST /faults`. Every field is optional; the ones present are applied.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRequest {
    /// Close every client connection now.
    #[serde(default)]
    pub drop_connections: bool,
    /// Refuse the next N authentications with `WRONGPASS`.
    pub reject_auths: Option<u64>,
    /// Answer authentications with the throttling errors for this many milliseconds.
    pub throttle_auth_ms: Option<u64>,
    /// `"stop"` or `"start"` the upstream servers (every node of a cluster).
    pub upstream: Option<String>,
    /// Close every client connection of this node's front (the index in
    /// `LOCALSTACK_NODES`).
    pub drop_node_connections: Option<usize>,
    /// Kill this node's server (the index in `LOCALSTACK_NODES`).
    pub kill_node: Option<usize>,
    /// Start this node's server again, with its cluster state.
    pub restart_node: Option<usize>,
    /// Fail over this shard (from 0): a replica takes over; the old
    /// primary's front closes its connections.
    pub failover_shard: Option<usize>,
    /// Move slots between shards while clients work.
    pub migrate_slots: Option<SlotMigration>,
    /// Fail the next N credential endpoint requests (HTTP 500).
    pub fail_credential_requests: Option<u64>,
    /// Fail every credential endpoint request (HTTP 500) for this many
    /// milliseconds: an outage of the credential source.
    pub credential_outage_ms: Option<u64>,
}

/// `migrate_slots` in `POST /faults`: `count` slots from shard `from` to shard `to`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SlotMigration {
    /// The shard giving the slots (its last ones).
    pub from: usize,
    /// The shard taking them.
    pub to: usize,
    /// How many slots.
    pub count: usize,
}

pub(crate) struct EndpointsState {
    pub(crate) shared: Arc<Shared>,
    pub(crate) credential_lifetime: Duration,
    pub(crate) pod_identity_token: String,
    pub(crate) web_identity_token: String,
}

pub(crate) fn router(state: Arc<EndpointsState>) -> Router {
    Router::new()
        .route("/ecs/credentials", get(ecs_credentials))
        .route("/pod-identity/credentials", get(pod_identity_credentials))
        .route("/", post(sts))
        .route("/stats", get(stats))
        .route("/faults", post(faults))
        .with_state(state)
}

fn random_string(len: usize, alphabet: &[u8]) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

/// Issue and register temporary credentials for `principal`.
fn issue(state: &EndpointsState, principal: &str) -> (KnownCredentials, SystemTime) {
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let expires = state.shared.clock.now() + state.credential_lifetime;
    let credentials = KnownCredentials {
        access_key_id: format!("ASIA{}", random_string(16, UPPER)),
        secret_access_key: random_string(40, B64),
        session_token: Some(format!("IQoJb3JpZ2luX2VjE{}==", random_string(300, B64))),
        expires: Some(expires),
        principal: principal.to_owned(),
    };
    state.shared.registry.insert(credentials.clone());
    state.shared.stats.credentials_issued();
    tracing::debug!(access_key_id = %credentials.access_key_id, principal, "issued temporary credentials");
    (credentials, expires)
}

fn rfc3339(t: SystemTime) -> String {
    OffsetDateTime::from(t).format(&Rfc3339).unwrap_or_default()
}

fn injected_failure(state: &EndpointsState) -> Option<Response> {
    state.shared.faults.take_credential_failure().then(|| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "injected credential endpoint failure",
        )
            .into_response()
    })
}

fn container_response(state: &EndpointsState, principal: &str) -> Response {
    let (c, expires) = issue(state, principal);
    Json(serde_json::json!({
        "AccessKeyId": c.access_key_id,
        "SecretAccessKey": c.secret_access_key,
        "Token": c.session_token,
        "Expiration": rfc3339(expires),
        "RoleArn": principal,
    }))
    .into_response()
}

async fn ecs_credentials(State(state): State<Arc<EndpointsState>>) -> Response {
    if let Some(failure) = injected_failure(&state) {
        return failure;
    }
    container_response(&state, ECS_ROLE_ARN)
}

async fn pod_identity_credentials(
    State(state): State<Arc<EndpointsState>>,
    headers: HeaderMap,
) -> Response {
    if let Some(failure) = injected_failure(&state) {
        return failure;
    }
    let authorized = headers
        .get(header::AUTHORIZATION)
        .is_some_and(|v| v.as_bytes() == state.pod_identity_token.as_bytes());
    if !authorized {
        return (StatusCode::UNAUTHORIZED, "missing or wrong Authorization").into_response();
    }
    container_response(&state, POD_IDENTITY_ROLE_ARN)
}

fn sts_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>\
         <Code>{code}</Code><Message>{message}</Message></Error><RequestId>localstack</RequestId></ErrorResponse>"
    );
    (status, [(header::CONTENT_TYPE, "text/xml")], body).into_response()
}

async fn sts(
    State(state): State<Arc<EndpointsState>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Some(failure) = injected_failure(&state) {
        return failure;
    }
    if form.get("Action").map(String::as_str) != Some("AssumeRoleWithWebIdentity") {
        return sts_error(
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            "only AssumeRoleWithWebIdentity is mocked",
        );
    }
    if form.get("RoleArn").map(String::as_str) != Some(IRSA_ROLE_ARN) {
        return sts_error(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "not authorized to assume this role",
        );
    }
    if form.get("WebIdentityToken") != Some(&state.web_identity_token) {
        return sts_error(
            StatusCode::BAD_REQUEST,
            "InvalidIdentityToken",
            "the web identity token is not valid",
        );
    }
    let session = form
        .get("RoleSessionName")
        .cloned()
        .unwrap_or_else(|| "session".into());
    let principal = format!("arn:aws:sts::000000000000:assumed-role/localstack-irsa/{session}");
    let (c, expires) = issue(&state, &principal);
    let body = format!(
        "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
         <AssumeRoleWithWebIdentityResult>\
         <Credentials><AccessKeyId>{}</AccessKeyId><SecretAccessKey>{}</SecretAccessKey>\
         <SessionToken>{}</SessionToken><Expiration>{}</Expiration></Credentials>\
         <SubjectFromWebIdentityToken>system:serviceaccount:default:localstack</SubjectFromWebIdentityToken>\
         <AssumedRoleUser><Arn>{principal}</Arn><AssumedRoleId>AROALOCALSTACK:{session}</AssumedRoleId></AssumedRoleUser>\
         <Provider>localstack</Provider><Audience>sts.amazonaws.com</Audience>\
         </AssumeRoleWithWebIdentityResult>\
         <ResponseMetadata><RequestId>localstack</RequestId></ResponseMetadata>\
         </AssumeRoleWithWebIdentityResponse>",
        c.access_key_id,
        c.secret_access_key,
        c.session_token.unwrap_or_default(),
        rfc3339(expires),
    );
    ([(header::CONTENT_TYPE, "text/xml")], body).into_response()
}

async fn stats(State(state): State<Arc<EndpointsState>>) -> Response {
    Json(state.shared.stats.snapshot()).into_response()
}

/// Applies one fault with its value.
type ApplyFault<'a> = dyn Fn(u64) + 'a;

async fn faults(
    State(state): State<Arc<EndpointsState>>,
    Json(request): Json<FaultRequest>,
) -> Response {
    // Nothing is applied unless everything asked for can be.
    if let Err(message) = check(&request, &state.shared) {
        return (StatusCode::BAD_REQUEST, message).into_response();
    }
    let failed = |e: crate::upstream::UpstreamError| {
        (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
    };
    let mut applied = Vec::new();
    if request.drop_connections {
        state.shared.drop_all_connections();
        applied.push("drop_connections".to_owned());
    }
    let faults = &state.shared.faults;
    let requested: [(&str, Option<u64>, &ApplyFault); 4] = [
        ("reject_auths", request.reject_auths, &|n| {
            faults.reject_next_auths(n)
        }),
        ("throttle_auth_ms", request.throttle_auth_ms, &|ms| {
            faults.throttle_auths_for(Duration::from_millis(ms))
        }),
        (
            "fail_credential_requests",
            request.fail_credential_requests,
            &|n| faults.fail_credential_requests(n),
        ),
        (
            "credential_outage_ms",
            request.credential_outage_ms,
            &|ms| faults.credential_outage_for(Duration::from_millis(ms)),
        ),
    ];
    for (name, value, apply) in requested {
        if let Some(value) = value {
            apply(value);
            applied.push(format!("{name}={value}"));
        }
    }
    if let Some(action) = &request.upstream {
        if action == "stop" {
            state.shared.stop_upstream().await;
        } else if let Err(e) = state.shared.start_upstream().await {
            return failed(e);
        }
        applied.push(format!("upstream={action}"));
    }
    let shared = &state.shared;
    if let Some(index) = request.drop_node_connections {
        shared.drop_connections_of(index);
        applied.push(format!("drop_node_connections={index}"));
    }
    let node_faults = [
        ("kill_node", request.kill_node),
        ("restart_node", request.restart_node),
        ("failover_shard", request.failover_shard),
    ];
    for (name, value) in node_faults {
        let Some(value) = value else { continue };
        let outcome = match name {
            "kill_node" => shared.kill_node(value).await.map(|()| String::new()),
            "restart_node" => shared.restart_node(value).await.map(|()| String::new()),
            _ => shared
                .fail_over(value)
                .await
                .map(|(old, new)| format!(" (node {new} took over from node {old})")),
        };
        match outcome {
            Ok(detail) => applied.push(format!("{name}={value}{detail}")),
            Err(e) => return failed(e),
        }
    }
    if let Some(SlotMigration { from, to, count }) = request.migrate_slots {
        match shared.migrate_slots(from, to, count).await {
            Ok(slots) => applied.push(format!(
                "migrate_slots: {} slots from shard {from} to shard {to}",
                slots.len()
            )),
            Err(e) => return failed(e),
        }
    }
    Json(serde_json::json!({ "applied": applied })).into_response()
}

/// What in `request` cannot be done on this stack, if anything.
fn check(request: &FaultRequest, shared: &Shared) -> Result<(), String> {
    if let Some(action) = request.upstream.as_deref()
        && !matches!(action, "stop" | "start")
    {
        return Err(format!(
            "upstream must be \"stop\" or \"start\", not {action:?}"
        ));
    }
    if let Some(index) = request.drop_node_connections
        && index >= shared.fronts.len()
    {
        return Err(format!(
            "there is no node {index}: the stack has {}",
            shared.fronts.len()
        ));
    }
    for index in [request.kill_node, request.restart_node]
        .into_iter()
        .flatten()
    {
        if index >= shared.servers.len() {
            return Err(format!(
                "there is no node {index}: the stack has {}",
                shared.servers.len()
            ));
        }
    }
    let shards = shared.shards();
    let shard = |what: &str, shard: usize| match shards {
        None => Err(format!(
            "{what} needs a cluster (--cluster-mode, --memorydb-cluster or --serverless-cache)"
        )),
        Some(shards) if shard >= shards => Err(format!(
            "there is no shard {shard}: the cluster has {shards}"
        )),
        Some(_) => Ok(()),
    };
    if let Some(failover) = request.failover_shard {
        shard("a failover", failover)?;
        if shared.replicas() == Some(0) {
            return Err("a failover needs a replica: the cluster has none".to_owned());
        }
    }
    if let Some(SlotMigration { from, to, .. }) = request.migrate_slots {
        shard("a slot migration", from)?;
        shard("a slot migration", to)?;
        if from == to {
            return Err("slots move between two different shards".to_owned());
        }
    }
    Ok(())
}
