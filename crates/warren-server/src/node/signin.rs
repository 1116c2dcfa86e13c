//! The node's operations about users: sign-in and sign-out, watchlists, and terminating a
//! user's connections. The per-user state of this node is in [`super::users`].
//!
//! The order, as for subscriptions: a connection is first recorded here (so a notice arriving
//! from now on finds it), then the node makes sure it listens to the user's channel, then the
//! cluster state records the change; a failure undoes what was done. The state reports going
//! online and offline once cluster-wide and tells the other nodes in the same step; the node
//! tells its own watchers. Each such notice carries the version the state gave the change,
//! because the node's own notice and other nodes' relayed ones reach its watchers by
//! different paths and can arrive out of order (INVARIANT(user-status-versioned), applied in
//! [`super::users`]).

use std::sync::Arc;

use futures_util::future::join_all;
use warren_protocol::user::UserChannel;
use warren_protocol::{AppId, SocketId, UserId};

use super::Node;
use crate::cluster::{BackendError, ChannelEvent, ChannelMessage, UserNotice, UserStatus};
use crate::outbox::Outbox;

/// A connection signing in.
pub(crate) struct SigningIn<'a> {
    pub app: &'a AppId,
    pub user: &'a UserChannel,
    pub socket: SocketId,
    pub outbox: &'a Arc<Outbox>,
    /// Record the user as online cluster-wide: the app has watchlist events.
    pub online: bool,
}

impl Node {
    /// Signs a connection in: from now on it can be terminated from any node, and (with
    /// `online`) the user counts as online for watchers.
    pub(crate) async fn sign_in(&self, s: SigningIn<'_>) -> Result<(), BackendError> {
        self.users.sign_in(s.app, s.user, s.socket, s.outbox);
        let recorded = match self
            .listening
            .ensure(&*self.broker, s.app, s.user.channel())
            .await
        {
            Ok(()) if s.online => self.state.sign_in(s.app, s.socket, s.user.user()).await,
            Ok(()) => Ok(None),
            Err(e) => Err(e),
        };
        match recorded {
            Ok(came_online) => {
                if let Some(version) = came_online {
                    let online = UserStatus {
                        online: true,
                        version,
                    };
                    self.deliver_here(&notice(s.app, s.user, UserNotice::Status(online)));
                }
                Ok(())
            }
            Err(e) => {
                self.users.sign_out(s.app, s.user, s.socket);
                self.release(s.app, s.user.channel()).await;
                Err(e)
            }
        }
    }

    /// Signs a connection out (when it closes). A backend failure is logged: the connection
    /// is gone either way, and a cluster backend repairs its state when it reconnects.
    pub(crate) async fn sign_out(
        &self,
        app: &AppId,
        user: &UserChannel,
        socket: SocketId,
        online: bool,
    ) {
        self.users.sign_out(app, user, socket);
        self.release(app, user.channel()).await;
        if !online {
            return;
        }
        match self.state.sign_out(app, socket, user.user()).await {
            Ok(Some(version)) => {
                let offline = UserStatus {
                    online: false,
                    version,
                };
                self.deliver_here(&notice(app, user, UserNotice::Status(offline)));
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(user = %user.user(), error = %e, "could not record sign-out"),
        }
    }

    /// Starts telling a connection about its watchlist: the current status of every user on
    /// it, in one `pusher_internal:watchlist_events`, then every change.
    pub(crate) async fn watch(
        &self,
        app: &AppId,
        socket: SocketId,
        outbox: &Arc<Outbox>,
        watchlist: &[UserChannel],
    ) -> Result<(), BackendError> {
        self.users.watch(app, socket, outbox, watchlist);
        let listened = join_all(
            watchlist
                .iter()
                .map(|u| self.listening.ensure(&*self.broker, app, u.channel())),
        )
        .await;
        let online = match listened.into_iter().find_map(Result::err) {
            Some(e) => Err(e),
            None => {
                let ids: Vec<UserId> = watchlist.iter().map(|u| u.user().clone()).collect();
                self.state.online(app, &ids).await
            }
        };
        match online {
            Ok(online) => {
                self.users.activate(app, socket, outbox, watchlist, &online);
                Ok(())
            }
            Err(e) => {
                self.unwatch(app, socket, watchlist).await;
                Err(e)
            }
        }
    }

    /// Stops telling a connection about its watchlist (when it closes).
    pub(crate) async fn unwatch(&self, app: &AppId, socket: SocketId, watchlist: &[UserChannel]) {
        self.users.unwatch(app, socket, watchlist);
        join_all(watchlist.iter().map(|u| self.release(app, u.channel()))).await;
    }

    /// Sends the watchlist changes gathered for this node's watchers, a batch at a time, until
    /// the task is aborted.
    pub(crate) async fn send_watchlist_batches(&self) {
        self.users.send_batches_forever().await;
    }

    /// Closes every connection signed in as `user`, on every node, with 4009.
    pub async fn terminate_user(
        &self,
        app: &AppId,
        user: &UserChannel,
    ) -> Result<(), BackendError> {
        self.publish(&notice(app, user, UserNotice::Terminate))
            .await
    }
}

fn notice(app: &AppId, user: &UserChannel, notice: UserNotice) -> ChannelEvent {
    ChannelEvent {
        app: app.clone(),
        channel: user.channel().clone(),
        except: None,
        message: ChannelMessage::User(notice),
    }
}
