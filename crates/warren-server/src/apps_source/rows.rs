//! Reading the table: every row becomes an [`App`] through the same parsing and rules as an
//! `[[apps]]` section; a row that breaks them is left out (and logged with its id and column),
//! never the others.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_postgres::{GenericClient, Row};

use crate::app::{App, PreviousSecret};
use crate::config::AppConfig;

/// One row: the app, or why it was left out.
pub struct Read {
    pub id: String,
    pub app: Result<App, RowProblem>,
}

/// A row that breaks a rule: the column and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowProblem {
    pub column: String,
    pub what: String,
}

impl std::fmt::Display for RowProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.column.is_empty() {
            f.write_str(&self.what)
        } else {
            write!(f, "column {}: {}", self.column, self.what)
        }
    }
}

/// The select every reader uses: the `[[apps]]` keys as one JSON object, and the rotation
/// columns apart; `condition` is empty or a `WHERE` clause.
fn select(table: &str, condition: &str) -> String {
    format!(
        "SELECT t.id, to_jsonb(t) - 'previous_secret' - 'previous_secret_until' - 'updated_at', \
         t.previous_secret, extract(epoch FROM t.previous_secret_until)::float8 \
         FROM {table} t {condition} ORDER BY t.id"
    )
}

/// Every row of `table`.
pub async fn read_all(
    client: &impl GenericClient,
    table: &str,
) -> Result<Vec<Read>, tokio_postgres::Error> {
    let rows = client.query(&select(table, ""), &[]).await?;
    rows.iter().map(read).collect()
}

/// The row of app `id`, if there is one.
pub async fn read_one(
    client: &impl GenericClient,
    table: &str,
    id: &str,
) -> Result<Option<Read>, tokio_postgres::Error> {
    let row = client
        .query_opt(&select(table, "WHERE t.id = $1"), &[&id])
        .await?;
    row.as_ref().map(read).transpose()
}

fn read(row: &Row) -> Result<Read, tokio_postgres::Error> {
    let id: String = row.try_get(0)?;
    let json: serde_json::Value = row.try_get(1)?;
    let previous: Option<String> = row.try_get(2)?;
    let until: Option<f64> = row.try_get(3)?;
    let app = AppConfig::from_json(json)
        .map(|config| {
            App::from_config(&config).with_previous_secret(previous_secret(previous, until))
        })
        .map_err(|(column, what)| RowProblem { column, what });
    Ok(Read { id, app })
}

/// The previous secret while it has a (representable) end of grace; none otherwise.
fn previous_secret(secret: Option<String>, until: Option<f64>) -> Option<PreviousSecret> {
    let since_epoch = Duration::try_from_secs_f64(until?).ok()?;
    Some(PreviousSecret {
        secret: secret.filter(|s| !s.is_empty())?.into(),
        until: UNIX_EPOCH
            .checked_add(since_epoch)
            .unwrap_or(SystemTime::UNIX_EPOCH),
    })
}
