//! Who may open a connection: the checks between the WebSocket handshake and
//! `connection_established` (docs/PROTOCOL.md, "Connection" and "Error and close codes").

use std::sync::Arc;

use warren_protocol::{ErrorCode, SUPPORTED_PROTOCOLS};

use crate::app::{App, AppRegistry, ConnectionSlot};

/// A refusal: sent as `pusher:error` and then as the close code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

fn refuse(code: ErrorCode, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

/// Checks the request path, query and `Origin` of a WebSocket upgrade, in Pusher's order:
/// path, app, app enabled, origin, protocol version, this node's share of the connection
/// quota (the cluster's is taken after, by the caller: it asks the backend).
pub fn admit(
    apps: &dyn AppRegistry,
    path: &str,
    query: &str,
    origin: Option<&str>,
) -> Result<(Arc<App>, ConnectionSlot), Refusal> {
    let key = path
        .strip_prefix("/app/")
        .map(|k| k.trim_end_matches('/'))
        .filter(|k| !k.is_empty() && !k.contains('/'))
        .ok_or_else(|| {
            refuse(
                ErrorCode::PathNotFound,
                format!("Path not found: {}", clip(path)),
            )
        })?;
    let app = apps.by_key(key).ok_or_else(|| {
        refuse(
            ErrorCode::AppNotFound,
            format!("App key {} does not exist", clip(key)),
        )
    })?;
    if !app.enabled {
        return Err(refuse(ErrorCode::AppDisabled, "Application is disabled"));
    }
    // 4009, as Pusher answers an origin it was told to refuse: pusher-js gives up and
    // reports the message, where a refused upgrade would have it retry forever, silently.
    if !app.allowed_origins.allows(origin) {
        return Err(refuse(
            ErrorCode::Unauthorized,
            format!("Origin not allowed: {}", clip(origin.unwrap_or_default())),
        ));
    }
    check_protocol(query)?;
    let slot = app.try_connect().ok_or_else(|| {
        refuse(
            ErrorCode::OverConnectionQuota,
            "Application is over connection quota",
        )
    })?;
    Ok((app, slot))
}

/// The metrics' name for a refusal's code (`warren_connections_refused_total{reason}`).
pub fn reason_label(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::PathNotFound => "path_not_found",
        ErrorCode::AppNotFound => "app_not_found",
        ErrorCode::AppDisabled => "app_disabled",
        ErrorCode::OverConnectionQuota => "app_over_quota",
        _ => "unsupported_protocol",
    }
}

fn check_protocol(query: &str) -> Result<(), Refusal> {
    let value = query
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == "protocol")
        .map(|(_, v)| v)
        .ok_or_else(|| refuse(ErrorCode::NoProtocol, "No protocol version supplied"))?;
    let version: u32 = value.parse().map_err(|_| {
        refuse(
            ErrorCode::InvalidVersion,
            format!("Invalid version string: {}", clip(value)),
        )
    })?;
    if !SUPPORTED_PROTOCOLS.contains(&version) {
        return Err(refuse(
            ErrorCode::UnsupportedProtocol,
            format!(
                "Unsupported protocol version {version}: this server speaks {} to {}",
                SUPPORTED_PROTOCOLS.start(),
                SUPPORTED_PROTOCOLS.end()
            ),
        ));
    }
    Ok(())
}

fn clip(s: &str) -> String {
    s.chars().take(100).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::StaticApps;
    use crate::config::Config;

    fn apps(enabled: bool, max_connections: u64) -> StaticApps {
        let mut cfg = Config::default().apps.remove(0);
        cfg.enabled = enabled;
        cfg.max_connections = max_connections;
        StaticApps::new([App::from_config(&cfg)])
    }

    fn code(r: Result<(Arc<App>, ConnectionSlot), Refusal>) -> Option<u16> {
        r.err().map(|e| e.code.code())
    }

    #[test]
    fn refusals_in_order() {
        let a = apps(true, 0);
        assert_eq!(code(admit(&a, "/nope", "protocol=7", None)), Some(4005));
        assert_eq!(code(admit(&a, "/app/", "protocol=7", None)), Some(4005));
        assert_eq!(code(admit(&a, "/app/zzz", "protocol=7", None)), Some(4001));
        assert_eq!(
            code(admit(&apps(false, 0), "/app/app-key", "protocol=7", None)),
            Some(4003)
        );
        assert_eq!(
            code(admit(&a, "/app/app-key", "client=js", None)),
            Some(4008)
        );
        assert_eq!(
            code(admit(&a, "/app/app-key", "protocol=seven", None)),
            Some(4006)
        );
        assert_eq!(
            code(admit(&a, "/app/app-key", "protocol=", None)),
            Some(4006)
        );
        assert_eq!(
            code(admit(&a, "/app/app-key", "protocol=3", None)),
            Some(4007)
        );
        assert_eq!(
            code(admit(&a, "/app/app-key", "protocol=8", None)),
            Some(4007)
        );
        assert_eq!(
            code(admit(
                &a,
                "/app/app-key",
                "client=js&protocol=7&version=8.4.0",
                None
            )),
            None
        );
    }

    #[test]
    fn an_origin_outside_the_list_is_refused_with_4009_before_the_protocol() {
        let mut cfg = Config::default().apps.remove(0);
        cfg.allowed_origins =
            crate::config::AllowedOrigins::parse(&["https://*.example.com"]).unwrap();
        let a = StaticApps::new([App::from_config(&cfg)]);
        let evil = Some("https://example.org");
        assert_eq!(
            code(admit(&a, "/app/app-key", "protocol=7", evil)),
            Some(4009)
        );
        assert_eq!(code(admit(&a, "/app/app-key", "", evil)), Some(4009));
        let good = Some("https://app.example.com");
        assert_eq!(code(admit(&a, "/app/app-key", "protocol=7", good)), None);
    }

    #[test]
    fn quota_is_released_when_the_slot_drops() {
        let a = apps(true, 1);
        let first = admit(&a, "/app/app-key", "protocol=7", None).unwrap();
        assert_eq!(
            code(admit(&a, "/app/app-key", "protocol=7", None)),
            Some(4004)
        );
        drop(first);
        assert!(admit(&a, "/app/app-key", "protocol=7", None).is_ok());
    }
}
