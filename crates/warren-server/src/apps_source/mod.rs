//! Apps from PostgreSQL (`[apps_source] backend = "postgres"`).
//!
//! A task keeps one connection to the database: it migrates the table (`schema.rs`), LISTENs
//! to the table's channel, reads every row (`rows.rs`) and hands the set to the node's
//! `reload::AppsUpdater`, which swaps it in whole. Then it reads the table again on each
//! notification (coalesced: one read for a burst) and every `refresh_interval_secs`, the
//! safety net for a notification lost with a connection. When the connection or a read fails,
//! the node keeps serving the apps it has, counts the failure, warns (once a minute at most)
//! and reconnects with backoff; a new connection starts with a full read, so the node catches
//! up with every change made meanwhile.
//!
//! `admin.rs` is what `warren apps` uses: the same table, migration and rules; both connect
//! through `database.rs` (plain, or TLS with the certificate verified, as the URL says).

pub mod admin;
mod database;
mod rows;
pub mod schema;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use metrics::{Counter, Gauge};
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client};

use crate::config::AppsSourceConfig;
use crate::metrics::{catalogue, Metrics};
use crate::reload::AppsUpdater;
use database::{explain, Database};

pub use rows::RowProblem;

/// How long connecting, and one read, may take.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Reconnection backoff: from the first to the last.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(2));
/// At most one warning about the outage in this time.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
enum Lost {
    #[error("{}", explain(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("the connection closed")]
    Closed,
}

/// The running source: one task on the runtime it was started on.
pub(crate) struct PostgresSource {
    database: Database,
    table: String,
    refresh: Duration,
    updater: Arc<AppsUpdater>,
    up: Gauge,
    failures: Counter,
}

impl PostgresSource {
    /// `None` without a URL; an error (naming the key) when TLS cannot be set up.
    pub(crate) fn new(
        config: &AppsSourceConfig,
        updater: Arc<AppsUpdater>,
        metrics: &Metrics,
    ) -> Result<Option<Self>, String> {
        let Some(database) = Database::new(config, IO_TIMEOUT)? else {
            return Ok(None);
        };
        let labels = [("backend", "postgres".to_owned())];
        Ok(Some(PostgresSource {
            database,
            table: config.table.clone(),
            refresh: Duration::from_secs(config.refresh_interval_secs),
            updater,
            up: metrics.gauge(&catalogue::APPS_SOURCE_UP, &labels),
            failures: metrics.counter(&catalogue::APPS_SOURCE_FAILURES, &labels),
        }))
    }

    /// Runs until the task is aborted (the server stops).
    pub(crate) async fn run(self) {
        self.up.set(0.0);
        let mut backoff = BACKOFF.0;
        let mut last_warning: Option<Instant> = None;
        let mut was_up = false;
        loop {
            let lost = self.session(&mut was_up, &mut backoff).await;
            self.up.set(0.0);
            self.failures.increment(1);
            let ready = self.updater.apps_ready();
            if last_warning.is_none_or(|at| at.elapsed() >= WARN_EVERY) || was_up {
                last_warning = Some(Instant::now());
                tracing::warn!(
                    url = %self.database.shown(),
                    error = %lost,
                    "apps source (PostgreSQL) unreachable: {}; retrying",
                    if ready {
                        "serving the apps read last"
                    } else {
                        "no apps yet (/ready answers 503)"
                    }
                );
            }
            was_up = false;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF.1);
        }
    }

    /// One connection: migrate, listen, read, then read again on each notification and
    /// tick, until something fails.
    async fn session(&self, was_up: &mut bool, backoff: &mut Duration) -> Lost {
        match self.serve_connection(was_up, backoff).await {
            Ok(never) => match never {},
            Err(lost) => lost,
        }
    }

    async fn serve_connection(
        &self,
        was_up: &mut bool,
        backoff: &mut Duration,
    ) -> Result<std::convert::Infallible, Lost> {
        let (mut client, mut connection) = timed(self.database.connect()).await?;
        // The connection's messages: notifications become wake-ups (one pending is enough:
        // a read sees every change made before it).
        let (wake, mut woken) = mpsc::channel::<()>(1);
        let driver = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(|cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(_)) => {
                        let _ = wake.try_send(());
                    }
                    Ok(_) => {}
                    Err(e) => return Some(e),
                }
            }
            None
        });
        let result = async {
            timed(schema::migrate(&mut client, &self.table)).await?;
            timed(client.batch_execute(&format!("LISTEN {}", self.table))).await?;
            self.read(&client).await?;
            self.up.set(1.0);
            if !*was_up {
                tracing::info!(url = %self.database.shown(), "apps source (PostgreSQL) connected");
            }
            *was_up = true;
            *backoff = BACKOFF.0;
            let mut tick = tokio::time::interval(self.refresh);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    woke = woken.recv() => {
                        if woke.is_none() {
                            return Err(Lost::Closed);
                        }
                    }
                    _ = tick.tick() => {}
                }
                self.read(&client).await?;
            }
        }
        .await;
        driver.abort();
        match (result, driver.await) {
            // The driver saw why the connection ended: a better reason than "closed".
            (Err(Lost::Closed), Ok(Some(e))) => Err(Lost::Db(e)),
            (result, _) => result,
        }
    }

    /// Reads every row and applies the set; bad rows are logged and left out.
    async fn read(&self, client: &Client) -> Result<(), Lost> {
        let read = timed(rows::read_all(client, &self.table)).await?;
        let (mut apps, mut bad) = (Vec::with_capacity(read.len()), Vec::new());
        for row in read {
            match row.app {
                Ok(app) => apps.push(app),
                Err(problem) => {
                    tracing::warn!(
                        app_id = %row.id,
                        column = %problem.column,
                        "app row refused, the app stays as it was: {}",
                        problem.what
                    );
                    bad.push(row.id);
                }
            }
        }
        // A row that became bad keeps the app's last good version, if it had one.
        self.updater.apply_keeping(apps, &bad, "postgres");
        Ok(())
    }
}

/// `io` within [`IO_TIMEOUT`].
async fn timed<T>(
    io: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, Lost> {
    match tokio::time::timeout(IO_TIMEOUT, io).await {
        Ok(done) => Ok(done?),
        Err(_) => Err(Lost::Timeout(IO_TIMEOUT)),
    }
}
