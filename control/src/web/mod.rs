//! The dashboard and its API: routes, security middleware, live updates (Server-Sent Events), the OpenAPI
//! document and `/metrics`.
//!
//! Mounting (the runtime): build a [`WebConfig`] (`WebConfig::from_lookup`), a user store
//! ([`crate::auth::MemoryUserStore::open`] without `DATABASE_URL`), a [`DashboardBackend`] (usually
//! [`model::LiveModel`] fed with every engine event), then
//! `let app = web::app(WebState::new(cfg, users, backend)?, extra_public_routes);` and serve it with
//! `app.into_make_service_with_connect_info::<SocketAddr>()` (the client address is required: without it every
//! request fails closed with 500).

pub mod backend;
pub mod config;
pub mod error;
mod layers;
mod live;
mod metrics;
pub mod model;
mod routes_api;
mod routes_auth;
pub mod session;
mod static_files;

pub use backend::DashboardBackend;
pub use config::{WebConfig, WebConfigError};
pub use error::ApiError;
pub use session::{Admin, ClientIp, Session};

use crate::auth::{LoginGuard, PasswordHasher, RateLimit, Tokens, UserStore};
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

/// Shared state of every route.
#[derive(Clone)]
pub struct WebState(Arc<Inner>);

struct Inner {
    cfg: WebConfig,
    tokens: Option<Tokens>,
    users: Arc<dyn UserStore>,
    hasher: PasswordHasher,
    login: LoginGuard,
    rate: RateLimit,
    backend: Arc<dyn DashboardBackend>,
}

impl std::fmt::Debug for WebState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebState")
            .field("auth_enabled", &self.0.cfg.auth_enabled)
            .finish_non_exhaustive()
    }
}

/// Why the web layer could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// A bad setting.
    #[error(transparent)]
    Config(#[from] WebConfigError),
    /// The password hasher could not initialise.
    #[error("password hasher: {0}")]
    Hasher(#[from] crate::auth::password::HashError),
}

impl WebState {
    /// Validates the config and builds the state. Computes one argon2 hash (tens of ms).
    pub fn new(
        cfg: WebConfig,
        users: Arc<dyn UserStore>,
        backend: Arc<dyn DashboardBackend>,
    ) -> Result<Self, WebError> {
        cfg.validate()?;
        let tokens = cfg
            .auth_enabled
            .then(|| Tokens::new(&cfg.jwt_secret, cfg.jwt_expiry));
        if !cfg.auth_enabled {
            tracing::warn!(bind = %cfg.bind, "AUTH_ENABLED=false: the dashboard is open to anyone on this host");
        }
        Ok(Self(Arc::new(Inner {
            tokens,
            users,
            hasher: PasswordHasher::new()?,
            login: LoginGuard::new(cfg.login),
            rate: RateLimit::new(cfg.rate_per_sec, cfg.rate_burst),
            backend,
            cfg,
        })))
    }

    /// Token service (`None` when auth is disabled).
    pub fn tokens(&self) -> Option<&Tokens> {
        self.0.tokens.as_ref()
    }
    /// User store.
    pub fn users(&self) -> &Arc<dyn UserStore> {
        &self.0.users
    }
    /// The backend.
    pub fn backend(&self) -> &Arc<dyn DashboardBackend> {
        &self.0.backend
    }
    /// Config.
    pub fn config(&self) -> &WebConfig {
        &self.0.cfg
    }
    pub(crate) fn hasher(&self) -> &PasswordHasher {
        &self.0.hasher
    }
    pub(crate) fn login_guard(&self) -> &LoginGuard {
        &self.0.login
    }
    pub(crate) fn rate(&self) -> &RateLimit {
        &self.0.rate
    }
}

/// The dashboard's routes (without middleware).
fn routes(state: WebState) -> Router {
    Router::new()
        .route("/", get(static_files::index))
        .route("/index.html", get(static_files::index))
        .route("/assets/{file}", get(static_files::asset))
        .route("/api/openapi.json", get(static_files::openapi))
        .route("/api/auth/register", post(routes_auth::register))
        .route("/api/auth/login", post(routes_auth::login))
        .route("/api/auth/logout", post(routes_auth::logout))
        .route("/api/auth/me", get(routes_auth::me))
        .route("/api/auth/password", post(routes_auth::change_password))
        .route("/api/users", get(routes_auth::users))
        .route(
            "/api/users/{username}",
            axum::routing::delete(routes_auth::delete_user).patch(routes_auth::update_user),
        )
        .route("/api/status", get(routes_api::status))
        .route("/api/snapshot", get(routes_api::snapshot))
        .route("/api/positions", get(routes_api::positions))
        .route("/api/orders/open", get(routes_api::open_orders))
        .route("/api/trades", get(routes_api::trades))
        .route("/api/pnl", get(routes_api::pnl))
        .route("/api/breakers", get(routes_api::breakers))
        .route("/api/limits", get(routes_api::limits))
        .route("/api/latency", get(routes_api::latency))
        .route("/api/audit", get(routes_api::audit_log))
        .route("/api/control/halt", post(routes_api::halt))
        .route("/api/control/resume", post(routes_api::resume))
        .route("/api/control/kill", post(routes_api::kill))
        .route(
            "/api/control/breaker/reset",
            post(routes_api::reset_breaker),
        )
        .route("/api/events", get(live::events))
        .route("/metrics", get(metrics::metrics))
        .fallback(|| async { ApiError::NotFound })
        .with_state(state)
}

/// The complete, hardened application: the dashboard routes plus `extra` (e.g. the runtime's `/api/health`,
/// which stays public), all behind the security layers — security headers, client-IP resolution and the
/// access log, panic catching, the IP allowlist, the per-IP rate limit and the body size limit.
pub fn app(state: WebState, extra: Router) -> Router {
    layers::harden(routes(state.clone()).merge(extra), state)
}

/// Paths the router serves (kept in sync with the OpenAPI document by a test).
pub const API_PATHS: &[&str] = &[
    "/api/openapi.json",
    "/api/auth/register",
    "/api/auth/login",
    "/api/auth/logout",
    "/api/auth/me",
    "/api/auth/password",
    "/api/users",
    "/api/users/{username}",
    "/api/status",
    "/api/snapshot",
    "/api/positions",
    "/api/orders/open",
    "/api/trades",
    "/api/pnl",
    "/api/breakers",
    "/api/limits",
    "/api/latency",
    "/api/audit",
    "/api/control/halt",
    "/api/control/resume",
    "/api/control/kill",
    "/api/control/breaker/reset",
    "/api/events",
    "/metrics",
];
