//! The HTTP handlers and the router (see the crate docs for the table of
//! routes).

use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, State};
use axum::extract::{MatchedPath, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use serde_json::json;
use tower_http::trace::{DefaultOnRequest, DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::problem::Problem;
use crate::store::{MAX_TRIES, Store, Verdict};

/// What every handler shares.
#[derive(Clone)]
#[allow(missing_debug_implementations)]
pub struct AppState {
    /// The data, on the shared connection handle.
    pub store: Store,
    /// What `/metrics` renders.
    pub metrics: PrometheusHandle,
}

/// Every route, with request tracing.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health/redis", get(health))
        .route("/metrics", get(metrics))
        .route(
            "/users/{user}/sessions",
            post(login).get(list_sessions).delete(revoke_all),
        )
        .route(
            "/users/{user}/sessions/{session}",
            get(touch_session).delete(revoke_session),
        )
        .route("/users/{user}/tokens/revoked", post(revoke_token))
        .route("/users/{user}/families/revoked", post(revoke_family))
        .route("/users/{user}/tokens/{token}", get(token_status))
        .route("/users/{user}/codes/{purpose}", post(issue_code))
        .route("/users/{user}/codes/{purpose}/verify", post(verify_code))
        .fallback(|| async { Problem::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .layer(
            // One INFO line per request, naming the route's template (never
            // the path itself: session ids are bearer secrets).
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request<_>| {
                    let route = request
                        .extensions()
                        .get::<MatchedPath>()
                        .map_or("(no route)", MatchedPath::as_str);
                    tracing::info_span!("request", method = %request.method(), route)
                })
                .on_request(DefaultOnRequest::new().level(Level::DEBUG))
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .with_state(state)
}

type Answer = Result<Response, Problem>;

/// axum's path extractor, its rejections answered in the JSON error shape.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(Problem))]
struct Path<T>(T);

/// axum's query extractor, its rejections answered in the JSON error shape.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(Problem))]
struct Query<T>(T);

/// axum's JSON body extractor, its rejections answered in the JSON error
/// shape.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(Problem))]
struct Body<T>(T);

impl From<PathRejection> for Problem {
    fn from(rejection: PathRejection) -> Self {
        Problem::invalid(rejection.body_text())
    }
}

impl From<QueryRejection> for Problem {
    fn from(rejection: QueryRejection) -> Self {
        Problem::invalid(rejection.body_text())
    }
}

impl From<JsonRejection> for Problem {
    fn from(rejection: JsonRejection) -> Self {
        Problem::invalid(rejection.body_text())
    }
}

/// The crate's health report: 200 when healthy, 503 when not (a target group
/// then drains the task). It holds no secret.
async fn health(State(state): State<AppState>) -> Response {
    let report = state.store.redis().health().await;
    let status = if report.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}

/// Prometheus text format: the crate's metrics, its gauges set now.
async fn metrics(State(state): State<AppState>) -> Response {
    state.store.redis().record_metrics();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

#[derive(Deserialize)]
struct Login {
    #[serde(default)]
    client: Option<String>,
}

async fn login(
    State(state): State<AppState>,
    Path(user): Path<String>,
    Body(payload): Body<Login>,
) -> Answer {
    let login = payload;
    let client = login.client.unwrap_or_else(|| "unknown".into());
    if client.len() > 256 {
        return Err(Problem::invalid("client: at most 256 bytes"));
    }
    let session = state.store.login(&user, &client).await?;
    Ok((StatusCode::CREATED, Json(session)).into_response())
}

async fn list_sessions(State(state): State<AppState>, Path(user): Path<String>) -> Answer {
    let sessions = state.store.sessions(&user).await?;
    Ok(Json(json!({"user": user, "sessions": sessions})).into_response())
}

async fn revoke_all(State(state): State<AppState>, Path(user): Path<String>) -> Answer {
    let revoked = state.store.revoke_all(&user).await?;
    Ok(Json(json!({"user": user, "revoked": revoked})).into_response())
}

async fn touch_session(
    State(state): State<AppState>,
    Path((user, session)): Path<(String, String)>,
) -> Answer {
    match state.store.session(&user, &session).await? {
        Some(session) => Ok(Json(session).into_response()),
        None => Err(Problem::not_found("no such session: expired or revoked")),
    }
}

async fn revoke_session(
    State(state): State<AppState>,
    Path((user, session)): Path<(String, String)>,
) -> Answer {
    if state.store.revoke_session(&user, &session).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(Problem::not_found("no such session: expired or revoked"))
    }
}

#[derive(Deserialize)]
struct RevokeToken {
    token_id: String,
    /// Seconds until the token would expire.
    expires_in: u64,
}

async fn revoke_token(
    State(state): State<AppState>,
    Path(user): Path<String>,
    Body(payload): Body<RevokeToken>,
) -> Answer {
    let revoke = payload;
    state
        .store
        .revoke_token(
            &user,
            &revoke.token_id,
            Duration::from_secs(revoke.expires_in),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct RevokeFamily {
    family: String,
    /// Seconds until the family's longest-lived token would expire.
    expires_in: u64,
}

async fn revoke_family(
    State(state): State<AppState>,
    Path(user): Path<String>,
    Body(payload): Body<RevokeFamily>,
) -> Answer {
    let revoke = payload;
    state
        .store
        .revoke_family(
            &user,
            &revoke.family,
            Duration::from_secs(revoke.expires_in),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct TokenQuery {
    family: Option<String>,
}

async fn token_status(
    State(state): State<AppState>,
    Path((user, token)): Path<(String, String)>,
    Query(query): Query<TokenQuery>,
) -> Answer {
    let status = state
        .store
        .token_status(&user, &token, query.family.as_deref())
        .await?;
    Ok(Json(json!({"user": user, "token_id": token, "status": status})).into_response())
}

async fn issue_code(
    State(state): State<AppState>,
    Path((user, purpose)): Path<(String, String)>,
) -> Answer {
    let code = state.store.issue_code(&user, &purpose).await?;
    // A real service sends it by e-mail or SMS; the example returns it so
    // that its clients and tests can use it.
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "user": user,
            "purpose": purpose,
            "code": code,
            "expires_in": state.store.code_ttl().as_secs(),
            "max_tries": MAX_TRIES,
        })),
    )
        .into_response())
}

#[derive(Deserialize)]
struct Guess {
    code: String,
}

async fn verify_code(
    State(state): State<AppState>,
    Path((user, purpose)): Path<(String, String)>,
    Body(payload): Body<Guess>,
) -> Answer {
    let guess = payload;
    match state
        .store
        .verify_code(&user, &purpose, &guess.code)
        .await?
    {
        Verdict::Right => Ok(Json(json!({"valid": true})).into_response()),
        Verdict::Wrong { tries_left } => Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "wrong_code",
            format!("wrong code: {tries_left} tries left"),
        )),
        Verdict::Voided => Err(Problem::new(
            StatusCode::GONE,
            "code_voided",
            format!("wrong code, {MAX_TRIES} times: the code is void; ask for a new one"),
        )),
        Verdict::NoCode => Err(Problem::not_found(
            "no code to check: never issued, used, voided or expired",
        )),
    }
}
