//! HTTP API middleware and an `x-` route: a per-app quota of published events, refused with
//! 429 once spent, and `GET /apps/{app_id}/x-quota` (signed like any API request) reporting
//! what is left.
//!
//! `cargo run -p warren-server --example tenant_quota`. Exercised by
//! `tests/integration/extensions.rs`.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use warren_server::extend::{ApiMiddleware, ApiRefusal, ApiRequest, ApiRoute, ServerHandle};
use warren_server::{Config, Server, ServerBuilder};

/// Events each app may publish through the API (per process, for the example's sake).
pub struct Quota {
    limit: u64,
    used: Mutex<HashMap<String, u64>>,
}

impl Quota {
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: Mutex::default(),
        })
    }
}

struct Enforce(Arc<Quota>);

#[async_trait::async_trait]
impl ApiMiddleware for Enforce {
    async fn on_request(&self, request: &ApiRequest<'_>) -> Result<(), ApiRefusal> {
        let publishes = request.method() == "POST" && request.path().ends_with("/events");
        if !publishes {
            return Ok(());
        }
        let mut used = self.0.used.lock();
        let count = used
            .entry(request.app().id.as_str().to_owned())
            .or_default();
        if *count >= self.0.limit {
            return Err(ApiRefusal::new(429, "Quota of published events spent"));
        }
        *count += 1;
        Ok(())
    }
}

struct Report(Arc<Quota>);

#[async_trait::async_trait]
impl ApiRoute for Report {
    async fn handle(
        &self,
        request: &ApiRequest<'_>,
        server: &ServerHandle,
    ) -> Result<serde_json::Value, ApiRefusal> {
        let used = self
            .0
            .used
            .lock()
            .get(request.app().id.as_str())
            .copied()
            .unwrap_or(0);
        Ok(serde_json::json!({
            "limit": self.0.limit,
            "used": used,
            "node": server.node_id(),
        }))
    }
}

pub fn extend(builder: ServerBuilder, quota: Arc<Quota>) -> ServerBuilder {
    builder
        .api_middleware(Enforce(quota.clone()))
        .api_route("quota", Report(quota))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::load(None, std::env::vars())?;
    let server = extend(Server::builder(config), Quota::new(1000))
        .start()
        .await?;
    println!("tenant_quota example listening on {}", server.addr);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
