//! The table of apps and its migrations, applied in order, each once: the schema's version is
//! a row of `<table>_schema`. Every node runs them at start (and `warren apps` before it
//! works), under an advisory lock so that nodes starting together do not race.
//!
//! A column per key of `[[apps]]`; `NULL` means the key's default, so the defaults are written
//! once (`config::AppConfig`), not here. `webhooks` and `allowed_origins` are JSON arrays as in
//! TOML. A statement trigger notifies `<table>` on every change.

use tokio_postgres::Client;

/// The migrations; version N is `MIGRATIONS[N - 1]`, with `{t}` standing for the table.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE {t} (
    id text PRIMARY KEY,
    key text NOT NULL UNIQUE,
    secret text NOT NULL,
    enabled boolean,
    client_events boolean,
    max_connections bigint,
    max_presence_members bigint,
    max_event_payload_kb bigint,
    max_channel_name_length bigint,
    client_event_rate_per_sec bigint,
    subscribe_rate_per_sec bigint,
    max_user_info_bytes bigint,
    max_user_id_length bigint,
    max_subscriptions_per_connection bigint,
    user_authentication_timeout bigint,
    watchlist_events boolean,
    cache_ttl_secs bigint,
    subscription_count_events boolean,
    webhooks jsonb,
    allowed_origins jsonb,
    api_request_rate_per_sec bigint,
    api_event_rate_per_sec bigint,
    previous_secret text,
    previous_secret_until timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE FUNCTION {t}_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{t}', '');
    RETURN NULL;
END $$;
CREATE TRIGGER {t}_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {t}
    FOR EACH STATEMENT EXECUTE FUNCTION {t}_notify();
"#];

/// The columns that are keys of `[[apps]]` (and so may be set by `warren apps set`).
pub const APP_COLUMNS: &[&str] = &[
    "id",
    "key",
    "secret",
    "enabled",
    "client_events",
    "max_connections",
    "max_presence_members",
    "max_event_payload_kb",
    "max_channel_name_length",
    "client_event_rate_per_sec",
    "subscribe_rate_per_sec",
    "max_user_info_bytes",
    "max_user_id_length",
    "max_subscriptions_per_connection",
    "user_authentication_timeout",
    "watchlist_events",
    "cache_ttl_secs",
    "subscription_count_events",
    "webhooks",
    "allowed_origins",
    "api_request_rate_per_sec",
    "api_event_rate_per_sec",
];

/// The schema version this build writes and reads.
pub const VERSION: i32 = MIGRATIONS.len() as i32;

/// Brings the table `table` (a name `config` checked: no quoting needed) to [`VERSION`].
/// Returns the version found before. A database at a later version (migrated by a newer
/// Warren) is left alone; migrations only add, so this version's columns are still there.
pub async fn migrate(client: &mut Client, table: &str) -> Result<i32, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    // One migrating node at a time; the lock ends with the transaction.
    tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&table])
        .await?;
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {table}_schema (version integer PRIMARY KEY, \
         applied_at timestamptz NOT NULL DEFAULT now())"
    ))
    .await?;
    let row = tx
        .query_one(
            &format!("SELECT coalesce(max(version), 0) FROM {table}_schema"),
            &[],
        )
        .await?;
    let found: i32 = row.try_get(0)?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        tx.batch_execute(&sql.replace("{t}", table)).await?;
        let version = i as i32 + 1;
        tx.execute(
            &format!("INSERT INTO {table}_schema (version) VALUES ($1)"),
            &[&version],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(found)
}
