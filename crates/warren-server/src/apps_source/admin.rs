//! Managing the table of apps (`warren apps`): list, add, change, remove, rotate a secret.
//!
//! Every change runs in a transaction that reads the row back through the server's own rules
//! (`rows.rs`, `config::AppConfig::from_json`) and rolls back when it breaks one, so the table
//! never holds a row the servers would refuse because of this tool. The servers see each
//! committed change through the table's trigger.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use tokio_postgres::{Client, Transaction};

use super::database::{explain, Database};
use super::rows::{self, Read};
use super::schema::{self, APP_COLUMNS};
use crate::config::AppsSourceConfig;

pub use super::schema::VERSION;

/// A new secret: 32 random bytes as hex.
pub fn generate_secret() -> String {
    (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// What went wrong, in one line for the command's user.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("PostgreSQL: {}", explain(.0))]
    Db(#[from] tokio_postgres::Error),
    /// No URL, or TLS that cannot be set up (the message names the key).
    #[error("{0}")]
    Setup(String),
    #[error("no app with id {0:?}")]
    NotFound(String),
    #[error("refused: {0}")]
    Refused(String),
}

/// One app as `list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub id: String,
    pub key: Option<String>,
    pub enabled: Option<bool>,
    /// The previous secret's end of grace, as seconds since the epoch, while it lasts.
    pub previous_secret_until: Option<u64>,
    /// Why the servers refuse the row, if they do.
    pub problem: Option<String>,
}

/// A connection to the apps table, migrated.
pub struct Admin {
    client: Client,
    table: String,
}

impl Admin {
    /// Connects to the database of `source` (its URL, TLS as its `sslmode` says) and brings
    /// its table to this build's schema (creating it when absent).
    pub async fn connect(source: &AppsSourceConfig) -> Result<Admin, AdminError> {
        let database = Database::new(source, Duration::from_secs(10))
            .map_err(AdminError::Setup)?
            .ok_or_else(|| AdminError::Setup("no database: apps_source.url is not set".into()))?;
        let table = &source.table;
        let (mut client, connection) = database.connect().await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "apps table connection ended");
            }
        });
        schema::migrate(&mut client, table).await?;
        Ok(Admin {
            client,
            table: table.to_owned(),
        })
    }

    /// Every app, by id.
    pub async fn list(&self) -> Result<Vec<Listed>, AdminError> {
        let now = SystemTime::now();
        let read = rows::read_all(&self.client, &self.table).await?;
        Ok(read
            .into_iter()
            .map(|Read { id, app }| match app {
                Ok(app) => Listed {
                    id,
                    key: Some(app.key.to_string()),
                    enabled: Some(app.enabled),
                    previous_secret_until: app
                        .previous_secret
                        .as_ref()
                        .filter(|p| p.until > now)
                        .and_then(|p| p.until.duration_since(UNIX_EPOCH).ok())
                        .map(|d| d.as_secs()),
                    problem: None,
                },
                Err(problem) => Listed {
                    id,
                    key: None,
                    enabled: None,
                    previous_secret_until: None,
                    problem: Some(problem.to_string()),
                },
            })
            .collect())
    }

    /// Adds an app with `fields` (keys of `[[apps]]`, as JSON values) beside its credentials.
    pub async fn add(
        &mut self,
        id: &str,
        key: &str,
        secret: &str,
        fields: Map<String, Value>,
    ) -> Result<(), AdminError> {
        let table = self.table.clone();
        let tx = self.client.transaction().await?;
        let inserted = tx
            .execute(
                &format!("INSERT INTO {table} (id, key, secret) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"),
                &[&id, &key, &secret],
            )
            .await?;
        if inserted == 0 {
            return Err(AdminError::Refused(format!(
                "an app with id {id:?} or key {key:?} exists"
            )));
        }
        set_fields(&tx, &table, id, &fields).await?;
        checked_commit(tx, &table, id).await
    }

    /// Changes the given `fields` of app `id`.
    pub async fn set(&mut self, id: &str, fields: Map<String, Value>) -> Result<(), AdminError> {
        let table = self.table.clone();
        let tx = self.client.transaction().await?;
        if !set_fields(&tx, &table, id, &fields).await? {
            return Err(AdminError::NotFound(id.to_owned()));
        }
        checked_commit(tx, &table, id).await
    }

    /// Removes app `id`.
    pub async fn remove(&self, id: &str) -> Result<(), AdminError> {
        let sql = format!("DELETE FROM {} WHERE id = $1", self.table);
        match self.client.execute(&sql, &[&id]).await? {
            0 => Err(AdminError::NotFound(id.to_owned())),
            _ => Ok(()),
        }
    }

    /// Makes `secret` app `id`'s secret, the current one staying valid for `grace` more.
    pub async fn rotate_secret(
        &mut self,
        id: &str,
        secret: &str,
        grace: Duration,
    ) -> Result<(), AdminError> {
        let table = self.table.clone();
        let tx = self.client.transaction().await?;
        let grace = grace.as_secs_f64();
        let sql = format!(
            "UPDATE {table} SET previous_secret = secret, \
             previous_secret_until = now() + make_interval(secs => $2), secret = $3, \
             updated_at = now() WHERE id = $1"
        );
        if tx.execute(&sql, &[&id, &grace, &secret]).await? == 0 {
            return Err(AdminError::NotFound(id.to_owned()));
        }
        checked_commit(tx, &table, id).await
    }
}

/// Sets each of `fields` (checked against the columns) from its JSON value, with PostgreSQL's
/// own conversion (`jsonb_populate_record`). Whether the row exists.
async fn set_fields(
    tx: &Transaction<'_>,
    table: &str,
    id: &str,
    fields: &Map<String, Value>,
) -> Result<bool, AdminError> {
    let mut assignments = vec!["updated_at = now()".to_owned()];
    for name in fields.keys() {
        if !APP_COLUMNS.contains(&name.as_str()) || name == "id" {
            return Err(AdminError::Refused(format!(
                "{name:?} is not a column of an app"
            )));
        }
        assignments.push(format!(
            "{name} = (jsonb_populate_record(t, $2::jsonb)).{name}"
        ));
    }
    let sql = format!(
        // `$2` is named even when no field is set, so that the statement takes both.
        "UPDATE {table} AS t SET {} WHERE t.id = $1 AND $2::jsonb IS NOT NULL",
        assignments.join(", ")
    );
    let json = Value::Object(fields.clone());
    Ok(tx.execute(&sql, &[&id, &json]).await? > 0)
}

/// Commits when the row of `id` passes the servers' rules; otherwise rolls back and says why.
async fn checked_commit(tx: Transaction<'_>, table: &str, id: &str) -> Result<(), AdminError> {
    match rows::read_one(&tx, table, id).await? {
        Some(Read {
            app: Err(problem), ..
        }) => Err(AdminError::Refused(problem.to_string())),
        Some(Read { app: Ok(_), .. }) => Ok(tx.commit().await?),
        None => Err(AdminError::NotFound(id.to_owned())),
    }
}
