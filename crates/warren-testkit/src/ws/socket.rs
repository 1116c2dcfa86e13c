//! A connection to the demo app that knows its socket id, so it can sign its subscriptions.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use warren_protocol::auth::{sign_channel, sign_user};

use super::{assert_silent, decode_data, recv, send, send_text, try_recv, Ws};
use crate::{KEY, SECRET, WAIT};

/// An established connection. `ws` is open to tests that send frames of their own.
pub struct Socket {
    pub ws: Ws,
    pub socket_id: String,
}

impl Socket {
    /// The next text message; see [`super::recv`].
    pub async fn recv(&mut self) -> Value {
        recv(&mut self.ws).await
    }

    /// The next message as the typed [`warren_protocol::ServerMessage`] clients decode.
    pub async fn recv_message(&mut self) -> warren_protocol::ServerMessage {
        super::recv_message(&mut self.ws).await
    }

    /// The next text message within `within`, if any; see [`super::try_recv`].
    pub async fn try_recv(&mut self, within: Duration) -> Option<Value> {
        try_recv(&mut self.ws, within).await
    }

    /// The next message with this event name within `within`, skipping others (a cluster may
    /// repeat announcements, e.g. member_added after a node registers again).
    pub async fn next_event(&mut self, event: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = self
                .try_recv(left)
                .await
                .unwrap_or_else(|| panic!("no {event} within {within:?}"));
            if msg["event"] == event {
                return msg;
            }
        }
    }

    pub async fn send(&mut self, v: Value) {
        send(&mut self.ws, v).await
    }

    pub async fn send_text(&mut self, text: &str) {
        send_text(&mut self.ws, text).await
    }

    /// Sends `pusher:subscribe` with the given `auth` (left out if `None`) and
    /// `channel_data`, and returns the reply: for tests that sign elsewhere or not at all.
    pub async fn subscribe_with(
        &mut self,
        channel: &str,
        auth: Option<&str>,
        channel_data: Option<&str>,
    ) -> Value {
        let mut data = json!({ "channel": channel });
        if let Some(auth) = auth {
            data["auth"] = json!(auth);
        }
        if let Some(cd) = channel_data {
            data["channel_data"] = json!(cd);
        }
        self.send(json!({"event": "pusher:subscribe", "data": data}))
            .await;
        self.recv().await
    }

    /// Subscribes with a correct signature where the channel needs one (and `channel_data`
    /// for presence) and returns the reply, success or not.
    pub async fn subscribe(&mut self, channel: &str, channel_data: Option<&str>) -> Value {
        let needs_auth = channel.starts_with("private-") || channel.starts_with("presence-");
        let auth = if needs_auth {
            sign_channel(KEY, SECRET, &self.socket_id, channel, channel_data)
        } else {
            String::new()
        };
        self.subscribe_with(channel, Some(&auth), channel_data)
            .await
    }

    /// Subscribes and asserts success; returns the decoded `data` of subscription_succeeded.
    pub async fn subscribed(&mut self, channel: &str, channel_data: Option<&str>) -> Value {
        let reply = self.subscribe(channel, channel_data).await;
        assert_eq!(
            reply["event"], "pusher_internal:subscription_succeeded",
            "{reply}"
        );
        assert_eq!(reply["channel"], channel);
        decode_data(&reply)
    }

    /// Sends `pusher:signin` with `user_data` signed for this socket, and returns the reply.
    pub async fn sign_in(&mut self, user_data: &str) -> Value {
        let auth = sign_user(KEY, SECRET, &self.socket_id, user_data);
        self.send(
            json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}}),
        )
        .await;
        self.recv().await
    }

    /// Signs in as `user_data` and asserts success.
    pub async fn signed_in(&mut self, user_data: &Value) {
        let text = user_data.to_string();
        let reply = self.sign_in(&text).await;
        assert_eq!(reply["event"], "pusher:signin_success", "{reply}");
        assert_eq!(decode_data(&reply), json!({ "user_data": text }));
    }

    /// Signs in as user `id` and subscribes to the user's `#server-to-user-` channel, as
    /// pusher-js does.
    pub async fn signed_in_as(&mut self, id: &str) {
        self.signed_in(&json!({ "id": id })).await;
        self.subscribed(&format!("#server-to-user-{id}"), None)
            .await;
    }

    pub async fn assert_silent(&mut self) {
        assert_silent(&mut self.ws).await
    }

    /// Closes normally and waits until the server has seen the close, so that what the test
    /// checks next (member_removed, channel counts) already reflects it.
    pub async fn close(mut self) {
        let _ = self
            .ws
            .close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            }))
            .await;
        let _ = tokio::time::timeout(WAIT, async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }
}
