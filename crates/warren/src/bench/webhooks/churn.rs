//! The presence churn: connections that join a presence channel as a new user, leave it, and
//! join again as another one, on a fixed beat, each join and leave noted in the [`Ledger`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;

use super::ledger::Ledger;

/// What every churning connection shares.
pub struct Churn {
    pub key: String,
    pub secret: String,
    /// Distinguishes this run's user ids from an earlier run's against the same servers.
    pub run: String,
    pub ledger: Arc<Ledger>,
    pub stop: watch::Receiver<bool>,
    pub connected: AtomicU64,
    pub succeeded: AtomicU64,
    pub errors: AtomicU64,
}

/// One connection's part: where, which channel, and its beat.
pub struct Member {
    pub index: usize,
    pub ws_url: String,
    pub channel: String,
    /// Time between two transitions (a join, then a leave, then a join...).
    pub period: Duration,
    /// When its first join is due.
    pub first: Instant,
}

/// Runs one connection until the stop; a connection still in its channel then leaves it.
pub async fn run(churn: Arc<Churn>, member: Member) -> Result<(), String> {
    let (mut ws, _) = tokio_tungstenite::connect_async(member.ws_url.as_str())
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let socket_id = loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                if let Some(id) = established(&text) {
                    break id;
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("before connection_established: {e}")),
            None => return Err("closed before connection_established".into()),
        }
    };
    churn.connected.fetch_add(1, Ordering::Relaxed);
    let mut beat = tokio::time::interval_at(member.first, member.period);
    beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut stop = churn.stop.clone();
    let mut joins = 0u64;
    let mut inside: Option<String> = None;
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => break,
            _ = beat.tick() => {
                let message = match inside.take() {
                    Some(user) => leave(&churn, &member.channel, &user),
                    None => {
                        joins += 1;
                        let user = format!("{}-{}-{joins}", churn.run, member.index);
                        let message = join(&churn, &socket_id, &member.channel, &user);
                        inside = Some(user);
                        message
                    }
                };
                ws.send(Message::text(message)).await.map_err(|e| e.to_string())?;
            }
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    if text.contains("\"pusher:ping\"") {
                        ws.send(Message::text(r#"{"event":"pusher:pong","data":{}}"#))
                            .await
                            .map_err(|e| e.to_string())?;
                    } else if text.contains("subscription_succeeded") {
                        churn.succeeded.fetch_add(1, Ordering::Relaxed);
                    } else if text.contains("\"pusher:error\"") || text.contains("subscription_error") {
                        churn.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("closed by the server".into()),
            },
        }
    }
    if let Some(user) = inside {
        let message = leave(&churn, &member.channel, &user);
        ws.send(Message::text(message))
            .await
            .map_err(|e| e.to_string())?;
    }
    let _ = ws.close(None).await;
    Ok(())
}

/// Resolves once the stop is given (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

fn established(text: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    if v["event"] != "pusher:connection_established" {
        return None;
    }
    let data: serde_json::Value = serde_json::from_str(v["data"].as_str()?).ok()?;
    data["socket_id"].as_str().map(str::to_owned)
}

fn join(churn: &Churn, socket_id: &str, channel: &str, user: &str) -> String {
    let channel_data = serde_json::json!({ "user_id": user }).to_string();
    let auth = warren_protocol::auth::sign_channel(
        &churn.key,
        &churn.secret,
        socket_id,
        channel,
        Some(&channel_data),
    );
    churn
        .ledger
        .joined(user.to_owned(), std::time::Instant::now());
    serde_json::json!({
        "event": "pusher:subscribe",
        "data": { "channel": channel, "auth": auth, "channel_data": channel_data },
    })
    .to_string()
}

fn leave(churn: &Churn, channel: &str, user: &str) -> String {
    churn.ledger.left(user, std::time::Instant::now());
    serde_json::json!({ "event": "pusher:unsubscribe", "data": { "channel": channel } }).to_string()
}
