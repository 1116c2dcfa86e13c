//! Who may watch: a request signed with an app's key and secret as a REST API request is
//! (`auth_key`, `auth_timestamp`, `auth_version`, `auth_signature` over method, path and
//! query), for that app only; or `Authorization: Bearer <operator_token>`, for every app.
//! Parameters travel in the query, signed; bodies are refused, so a browser needs no MD5.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use warren_protocol::auth::{constant_time_eq, normalize_params, parse_query, verify_rest_request};

use super::{Console, Refusal};
use crate::app::App;

/// A request let in, with its parameters (keys lowercased).
pub(super) struct Granted {
    pub who: Who,
    params: Vec<(String, String)>,
}

pub(super) enum Who {
    Operator,
    App(Arc<App>),
}

impl Granted {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// The app the request may see: the signer's, or for the operator, `app_id` if given.
    /// `Ok(None)`: the operator asked for every app.
    pub fn app_filter(&self) -> Result<Option<String>, Refusal> {
        match (&self.who, self.param("app_id")) {
            (Who::Operator, id) => Ok(id.map(str::to_owned)),
            (Who::App(app), Some(id)) if id != app.id.as_str() => Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "The signature grants its own app only",
            )),
            (Who::App(app), _) => Ok(Some(app.id.to_string())),
        }
    }

    /// The one app a query is about.
    pub fn app(&self, console: &Console) -> Result<Arc<App>, Refusal> {
        match self.app_filter()? {
            None => Err(Refusal::new(StatusCode::BAD_REQUEST, "Missing app_id")),
            Some(id) => console.apps.by_id(&id).ok_or_else(|| {
                let shown: String = id.chars().take(100).collect();
                Refusal::new(StatusCode::NOT_FOUND, format!("Unknown app: {shown}"))
            }),
        }
    }
}

/// Lets the request in or says why not. `has_body`: the request carried a body (refused).
pub(super) fn authorize(
    console: &Console,
    parts: &Parts,
    has_body: bool,
) -> Result<Granted, Refusal> {
    if has_body {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "Send parameters in the (signed) query, not in a body",
        ));
    }
    let query = parts.uri.query().unwrap_or("");
    let bad = |e: warren_protocol::auth::RestAuthError| {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED);
        Refusal::new(status, e.to_string())
    };
    if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
        let given = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let Some(token) = &console.operator_token else {
            return Err(Refusal::new(
                StatusCode::UNAUTHORIZED,
                "No operator token is configured ([monitor] operator_token): sign the request with an app's key and secret",
            ));
        };
        if !constant_time_eq(given.trim().as_bytes(), token.as_bytes()) {
            return Err(Refusal::new(
                StatusCode::UNAUTHORIZED,
                "Invalid operator token",
            ));
        }
        let params = normalize_params(&parse_query(query).map_err(bad)?);
        return Ok(Granted {
            who: Who::Operator,
            params,
        });
    }
    let raw = parse_query(query).map_err(bad)?;
    let key = raw
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("auth_key"))
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| {
            Refusal::new(
                StatusCode::UNAUTHORIZED,
                "Sign the request with an app's key and secret (auth_key...) or send Authorization: Bearer <operator token>",
            )
        })?;
    let app = console.apps.by_key(key).ok_or_else(|| {
        let shown: String = key.chars().take(100).collect();
        Refusal::new(
            StatusCode::UNAUTHORIZED,
            format!("Unknown app key: {shown}"),
        )
    })?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let tolerance = i64::try_from(console.timestamp_tolerance_secs).unwrap_or(i64::MAX);
    let params = app
        .verify_with(|secret| {
            verify_rest_request(
                parts.method.as_str(),
                parts.uri.path(),
                query,
                b"",
                |k| (k == app.key.as_str()).then(|| secret.to_owned()),
                now,
                tolerance,
            )
        })
        .map_err(bad)?;
    if !app.enabled {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "Application is disabled",
        ));
    }
    Ok(Granted {
        who: Who::App(app),
        params,
    })
}
