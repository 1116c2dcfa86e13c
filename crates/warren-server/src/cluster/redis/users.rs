//! Signed-in users in Redis: who is online, cluster-wide, for watchlists.
//!
//! A sign-in is recorded under the node instance like a subscription (see `scripts`), so the
//! cleanup of a dead node signs its users out, and a node that registers again records its
//! sign-ins again from its mirror. Going online and offline are announced by the scripts on
//! the user's `#server-to-user-` relay channel, in the same atomic step as the change.

use fred::interfaces::HashesInterface;
use fred::types::Value;
use warren_protocol::user::UserChannel;
use warren_protocol::{AppId, SocketId, UserId};

use super::{backend, envelope, value, Inner, COMMAND_TIMEOUT};
use crate::cluster::{BackendError, ChannelEvent, ChannelMessage, UserNotice};

impl Inner {
    /// Runs the sign-in script under `instance`; whether the user came online.
    pub(super) async fn sign_in(
        &self,
        instance: &str,
        app: &AppId,
        socket: SocketId,
        user: &UserId,
    ) -> Result<bool, BackendError> {
        self.announce_app(app, instance).await?;
        let channel = UserChannel::new(user.clone())
            .map_err(|e| BackendError(format!("user {user:?} has no channel: {e}")))?;
        let online = ChannelEvent {
            app: app.clone(),
            channel: channel.channel().clone(),
            except: None,
            message: ChannelMessage::User(UserNotice::Online),
        };
        let reply = self
            .eval(
                &self.scripts.sign_in,
                vec![self.keys.app_base(app)],
                vec![
                    Value::from(socket.to_string()),
                    Value::from(instance),
                    Value::from(user.as_str()),
                    Value::from(format!("{}~", self.options.node_id)),
                    Value::from(self.keys.events(app, channel.channel())),
                    Value::Bytes(envelope::encode(&self.origin, &online)?),
                    Value::from(self.publish_command()),
                ],
            )
            .await?;
        match value::int(&reply, "sign-in")? {
            -2 => Err(BackendError(format!(
                "socket id {socket} is in use by another node's connection"
            ))),
            n => Ok(n == 1),
        }
    }

    /// Runs the sign-out script; whether the user went offline.
    pub(super) async fn sign_out(
        &self,
        app: &AppId,
        socket: SocketId,
    ) -> Result<bool, BackendError> {
        self.signed_in.lock().remove(&(app.clone(), socket));
        let instance = self.instance.read().await;
        let reply = self
            .eval(
                &self.scripts.sign_out,
                vec![self.keys.app_base(app)],
                vec![
                    Value::from(socket.to_string()),
                    Value::from(instance.as_str()),
                    Value::from(self.relay_prefix(app)),
                    Value::Bytes(self.departure_header(app)?),
                    Value::from(self.publish_command()),
                ],
            )
            .await;
        let reply = value::array(self.note_failure(reply)?, "sign-out")?;
        value::flag_at(&reply, 0, "sign-out")
    }

    /// Whether each user has a signed-in connection anywhere.
    pub(super) async fn online(
        &self,
        app: &AppId,
        users: &[UserId],
    ) -> Result<Vec<bool>, BackendError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(e) = self.unavailable() {
            return Err(e);
        }
        let key = format!("{}:uc", self.keys.app_base(app));
        let fields: Vec<&str> = users.iter().map(UserId::as_str).collect();
        let reply: Value = tokio::time::timeout(COMMAND_TIMEOUT, self.client.hmget(key, fields))
            .await
            .map_err(|_| BackendError("Redis command timed out".into()))?
            .map_err(backend)?;
        let counts = match reply {
            // HMGET of a single field may come back as that field's value alone.
            Value::Array(items) => items,
            one => vec![one],
        };
        if counts.len() != users.len() {
            return Err(value::bad("online"));
        }
        counts
            .iter()
            .map(|c| Ok(value::int(c, "online")? > 0))
            .collect()
    }
}
