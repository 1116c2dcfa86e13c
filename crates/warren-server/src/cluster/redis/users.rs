//! Signed-in users in Redis: who is online, cluster-wide, for watchlists.
//!
//! A sign-in is recorded under the node instance like a subscription (see `scripts`), so the
//! cleanup of a dead node signs its users out, and a node that registers again records its
//! sign-ins again from its mirror. Going online and offline are announced by the scripts on
//! the user's `#server-to-user-` relay channel, in the same atomic step as the change, with
//! a version from the app's counter of user transitions (INVARIANT(user-status-versioned)),
//! or, with the fan-out elsewhere, by the node right after (`announce`).

use fred::interfaces::{HashesInterface, KeysInterface};
use fred::types::Value;
use warren_protocol::{AppId, SocketId, UserId};

use super::{backend, value, Inner, COMMAND_TIMEOUT};
use crate::cluster::{BackendError, UserStatus};

impl Inner {
    /// Runs the sign-in script under `instance`; the version of the user's going online, when
    /// they came online.
    pub(super) async fn sign_in(
        &self,
        instance: &str,
        app: &AppId,
        socket: SocketId,
        user: &UserId,
    ) -> Result<Option<u64>, BackendError> {
        self.announce_app(app, instance).await?;
        let reply = self
            .eval(
                &self.scripts.sign_in,
                vec![self.keys.app_base(app)],
                vec![
                    Value::from(socket.to_string()),
                    Value::from(instance),
                    Value::from(user.as_str()),
                    Value::from(format!("{}~", self.options.node_id)),
                    Value::from(self.relay_prefix(app)),
                    Value::Bytes(self.departure_header(app)?),
                    Value::from(self.publish_command()),
                ],
            )
            .await?;
        let online = match value::int(&reply, "sign-in")? {
            -2 => {
                return Err(BackendError(format!(
                    "socket id {socket} is in use by another node's connection"
                )))
            }
            v => u64::try_from(v).ok().filter(|&v| v > 0),
        };
        if let Some(version) = online.filter(|_| !self.scripts_announce()) {
            let status = UserStatus {
                online: true,
                version,
            };
            self.announce_status(app, user, status).await;
        }
        Ok(online)
    }

    /// Runs the sign-out script; the version of the user's going offline, when they did.
    pub(super) async fn sign_out(
        &self,
        app: &AppId,
        socket: SocketId,
    ) -> Result<Option<u64>, BackendError> {
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
        let version = value::int(reply.first().unwrap_or(&Value::Null), "sign-out")?;
        let offline = u64::try_from(version).ok().filter(|&v| v > 0);
        if let Some(version) = offline.filter(|_| !self.scripts_announce()) {
            let user = value::string(reply.get(1).unwrap_or(&Value::Null), "sign-out")?;
            if let Ok(user) = UserId::parse(&user, super::ANY_NAME_LENGTH) {
                let status = UserStatus {
                    online: false,
                    version,
                };
                self.announce_status(app, &user, status).await;
            }
        }
        Ok(offline)
    }

    /// Whether each user has a signed-in connection anywhere.
    pub(super) async fn online(
        &self,
        app: &AppId,
        users: &[UserId],
    ) -> Result<Vec<UserStatus>, BackendError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.connected()?;
        let base = self.keys.app_base(app);
        // The app's version counter is read *before* the statuses: every transition with a
        // version up to it happened before the statuses were read, so they show it; any later
        // one has a larger version and its notice will be applied.
        let version: Option<u64> =
            tokio::time::timeout(COMMAND_TIMEOUT, client.get(format!("{base}:uv")))
                .await
                .map_err(|_| BackendError("Redis command timed out".into()))?
                .map_err(backend)?;
        let version = version.unwrap_or(0);
        let key = format!("{base}:uc");
        let fields: Vec<&str> = users.iter().map(UserId::as_str).collect();
        let reply: Value = tokio::time::timeout(COMMAND_TIMEOUT, client.hmget(key, fields))
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
            .map(|c| {
                Ok(UserStatus {
                    online: value::int(c, "online")? > 0,
                    version,
                })
            })
            .collect()
    }
}
