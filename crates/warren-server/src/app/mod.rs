//! Applications: credentials, feature flags and limits, looked up by key (WebSocket) or id (API).
//!
//! An [`App`] never changes once built: a change makes a new one, swapped in by [`LiveApps`]
//! (`live.rs`). What belongs to the app rather than to one version of its settings is shared
//! by all its versions ([`Lifecycle`]): the count of its connections on this node, and whether
//! it was disabled or removed, which every connection of any version checks.

mod live;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use live::{AppsChange, LiveApps};

use warren_protocol::presence::MemberLimits;
use warren_protocol::{AppId, AppKey};

use crate::config::{AllowedOrigins, AppConfig};

/// One application as the server uses it: validated names and limits in the units the code
/// needs (bytes, not KB).
#[derive(Debug)]
pub struct App {
    pub id: AppId,
    pub key: AppKey,
    pub secret: Arc<str>,
    pub enabled: bool,
    pub client_events: bool,
    /// 0 means unlimited; cluster-wide on a backend that shares counts (`connection::quota`).
    pub max_connections: u64,
    pub max_presence_members: usize,
    pub max_event_payload_bytes: usize,
    pub max_channel_name_length: usize,
    pub client_event_rate_per_sec: u32,
    /// Subscribes one connection may send per second.
    pub subscribe_rate_per_sec: u32,
    pub member_limits: MemberLimits,
    pub max_subscriptions_per_connection: usize,
    /// How long a cache channel keeps its last event.
    pub cache_ttl: Duration,
    /// Subscribers of non-presence channels get `pusher_internal:subscription_count`.
    pub subscription_count_events: bool,
    /// Time a connection has to sign in or hold an authorized subscription; `None`: no limit.
    pub user_authentication_timeout: Option<std::time::Duration>,
    pub watchlist_events: bool,
    /// Web pages that may open WebSocket connections (empty: any).
    pub allowed_origins: AllowedOrigins,
    /// Signed API requests per second, cluster-wide; `None`: no limit.
    pub api_request_rate: Option<NonZeroU32>,
    /// Events published through the API per second, cluster-wide; `None`: no limit.
    pub api_event_rate: Option<NonZeroU32>,
    /// What it was built from, to tell a change of settings from none.
    settings: AppConfig,
    /// The secret before the last rotation, accepted until its grace period ends.
    pub previous_secret: Option<PreviousSecret>,
    /// Shared by every version of the app (under one key).
    lifecycle: Arc<Lifecycle>,
}

/// What every version of an app shares, so that a change of settings neither resets the count
/// its quota is checked against nor hides a connection admitted with an older version.
#[derive(Debug, Default)]
struct Lifecycle {
    /// Connections currently open on this node.
    connections: AtomicU64,
    /// [`Retired`] as a number.
    retired: AtomicU8,
}

/// A rotated-out secret and the end of its grace period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousSecret {
    pub secret: Arc<str>,
    pub until: SystemTime,
}

/// Why a version of an app no longer admits connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retired {
    /// Still current (or replaced by an enabled version).
    No = 0,
    /// Disabled: its connections close with 4003.
    Disabled = 1,
    /// Removed (or its key changed): its connections close with 4001.
    Removed = 2,
}

impl App {
    pub fn from_config(c: &AppConfig) -> Self {
        Self {
            id: c.id.clone(),
            key: c.key.clone(),
            secret: Arc::from(c.secret.as_str()),
            enabled: c.enabled,
            client_events: c.client_events,
            max_connections: c.max_connections,
            max_presence_members: c.max_presence_members,
            max_event_payload_bytes: c.max_event_payload_kb.saturating_mul(1024),
            max_channel_name_length: c.max_channel_name_length,
            client_event_rate_per_sec: c.client_event_rate_per_sec,
            subscribe_rate_per_sec: c.subscribe_rate_per_sec,
            max_subscriptions_per_connection: c.max_subscriptions_per_connection,
            member_limits: MemberLimits {
                max_user_id_length: c.max_user_id_length,
                max_user_info_bytes: c.max_user_info_bytes,
            },
            cache_ttl: Duration::from_secs(c.cache_ttl_secs),
            subscription_count_events: c.subscription_count_events,
            user_authentication_timeout: (c.user_authentication_timeout > 0)
                .then(|| std::time::Duration::from_secs(c.user_authentication_timeout)),
            watchlist_events: c.watchlist_events,
            allowed_origins: c.allowed_origins.clone(),
            api_request_rate: NonZeroU32::new(c.api_request_rate_per_sec),
            api_event_rate: NonZeroU32::new(c.api_event_rate_per_sec),
            previous_secret: None,
            settings: c.clone(),
            lifecycle: Arc::default(),
        }
    }

    /// The configuration this app was built from.
    pub fn settings(&self) -> &AppConfig {
        &self.settings
    }

    /// Accepts `previous` as a second secret until its grace period ends.
    pub fn with_previous_secret(mut self, previous: Option<PreviousSecret>) -> Self {
        self.previous_secret = previous;
        self
    }

    /// The secrets a signature may be made with now: the current one, then the previous one
    /// while its grace period lasts.
    pub fn secrets(&self) -> impl Iterator<Item = &str> {
        let previous = self
            .previous_secret
            .as_ref()
            .filter(|p| SystemTime::now() < p.until)
            .map(|p| &*p.secret);
        std::iter::once(&*self.secret).chain(previous)
    }

    /// Tries `verify` with each secret of [`App::secrets`]; the first success, else the
    /// error the current secret got.
    pub fn verify_with<T, E>(&self, mut verify: impl FnMut(&str) -> Result<T, E>) -> Result<T, E> {
        let mut secrets = self.secrets();
        let current = secrets.next().unwrap_or_default();
        let first = verify(current);
        if first.is_ok() {
            return first;
        }
        secrets.map(verify).find(Result::is_ok).unwrap_or(first)
    }

    /// Whether the app was disabled or removed since this version was looked up; read after
    /// the connection is in the registry (see `live.rs`).
    pub fn retired(&self) -> Retired {
        match self.lifecycle.retired.load(Ordering::SeqCst) {
            1 => Retired::Disabled,
            2 => Retired::Removed,
            _ => Retired::No,
        }
    }

    fn retire(&self, why: Retired) {
        self.lifecycle.retired.store(why as u8, Ordering::SeqCst);
    }

    /// Reserves a connection slot; `None` when the app is at its quota. The slot is released
    /// when the returned guard drops, so every exit path of a connection gives it back.
    pub fn try_connect(self: &Arc<Self>) -> Option<ConnectionSlot> {
        let limit = self.max_connections;
        let taken =
            self.lifecycle
                .connections
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (limit == 0 || n < limit).then_some(n + 1)
                });
        taken.ok().map(|_| ConnectionSlot(self.clone()))
    }

    pub fn connection_count(&self) -> u64 {
        self.lifecycle.connections.load(Ordering::Acquire)
    }
}

/// A held connection slot of an app.
#[derive(Debug)]
pub struct ConnectionSlot(Arc<App>);

/// The app the slot is held in: a connection keeps its app through its slot.
impl std::ops::Deref for ConnectionSlot {
    type Target = Arc<App>;

    fn deref(&self) -> &Arc<App> {
        &self.0
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.lifecycle.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Where apps come from: [`LiveApps`] (the configuration file, reloaded on `SIGHUP`, or
/// PostgreSQL), [`StaticApps`], or an embedding program's own. Lookups are synchronous: a
/// registry that reads a database keeps a copy in memory and refreshes it in the background.
pub trait AppRegistry: Send + Sync + 'static {
    fn by_key(&self, key: &str) -> Option<Arc<App>>;
    fn by_id(&self, id: &str) -> Option<Arc<App>>;
    fn all(&self) -> Vec<Arc<App>>;

    /// Whether the apps are loaded (`/ready` answers 503 until they are). A registry that
    /// loads them in the background says false until it has; a static one always has.
    fn is_ready(&self) -> bool {
        true
    }
}

/// Apps fixed for the server's life (for embedding programs; the server itself uses
/// [`LiveApps`]).
#[derive(Debug, Default)]
pub struct StaticApps {
    by_key: HashMap<String, Arc<App>>,
    by_id: HashMap<String, Arc<App>>,
}

impl StaticApps {
    pub fn new(apps: impl IntoIterator<Item = App>) -> Self {
        let mut me = Self::default();
        for app in apps {
            let app = Arc::new(app);
            me.by_key.insert(app.key.to_string(), app.clone());
            me.by_id.insert(app.id.to_string(), app);
        }
        me
    }
}

impl AppRegistry for StaticApps {
    fn by_key(&self, key: &str) -> Option<Arc<App>> {
        self.by_key.get(key).cloned()
    }

    fn by_id(&self, id: &str) -> Option<Arc<App>> {
        self.by_id.get(id).cloned()
    }

    fn all(&self) -> Vec<Arc<App>> {
        self.by_id.values().cloned().collect()
    }
}
