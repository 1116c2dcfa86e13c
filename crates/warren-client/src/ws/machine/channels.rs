//! The channels the user wants, and what each subscription has reached.
//!
//! A channel stays wanted until unsubscribed, across connections; what belongs to one
//! connection (the confirmation, presence members) is reset when it ends. Only the
//! server-to-user channel goes with the connection: it follows the next sign-in.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Map, Value};
use warren_protocol::names::SERVER_TO_USER_PREFIX;
use warren_protocol::presence::PresenceMember;
use warren_protocol::server_message::{ChannelEvent, PresenceSnapshot, SubscriptionRefusal};
use warren_protocol::{ChannelKind, ChannelName, UserId};

use super::{Output, Outputs, Settings};
use crate::auth::ChannelAuth;
use crate::ws::authorizer::ChannelAuthRequest;
use crate::ws::presence::{member_from_channel_data, Member, Members};
use crate::ws::{crypto, frames, ChannelShared, SubscriptionState, WsError};

#[derive(Default)]
pub(super) struct Channels {
    entries: HashMap<String, Entry>,
}

struct Entry {
    shared: Arc<ChannelShared>,
    /// Secretbox key of an encrypted channel, from its auth answer.
    key: Option<[u8; 32]>,
    /// Our own member on a presence channel, from the channel_data we subscribed with.
    me: Option<Member>,
}

impl Channels {
    /// Adds a channel to the wanted set; false if it was there already.
    pub fn add(&mut self, shared: Arc<ChannelShared>) -> bool {
        if self.entries.contains_key(&shared.name) {
            return false;
        }
        shared.state.send_replace(SubscriptionState::Pending);
        let entry = Entry {
            shared,
            key: None,
            me: None,
        };
        self.entries.insert(entry.shared.name.clone(), entry);
        true
    }

    /// Removes a channel; false if it was not wanted.
    pub fn remove(&mut self, name: &str) -> bool {
        let Some(entry) = self.entries.remove(name) else {
            return false;
        };
        entry
            .shared
            .state
            .send_replace(SubscriptionState::Unsubscribed);
        true
    }

    pub fn is_subscribed(&self, name: &str) -> bool {
        self.entries
            .get(name)
            .is_some_and(|e| matches!(*e.shared.state.borrow(), SubscriptionState::Subscribed))
    }

    /// Subscribes to every wanted channel on a new connection.
    pub fn subscribe_all(&mut self, socket_id: &str, settings: &Settings, out: &mut Outputs) {
        let names: Vec<String> = self.entries.keys().cloned().collect();
        for name in names {
            self.subscribe(&name, socket_id, settings, out);
        }
    }

    /// Adds a channel and subscribes to it on the current connection.
    pub fn subscribe_now(
        &mut self,
        shared: Arc<ChannelShared>,
        socket_id: &str,
        settings: &Settings,
        out: &mut Outputs,
    ) {
        let name = shared.name.clone();
        if self.add(shared) {
            self.subscribe(&name, socket_id, settings, out);
        }
    }

    /// Sends the subscription, or asks for its authorization first.
    pub fn subscribe(
        &mut self,
        name: &str,
        socket_id: &str,
        settings: &Settings,
        out: &mut Outputs,
    ) {
        let Some(entry) = self.entries.get(name) else {
            return;
        };
        entry.shared.state.send_replace(SubscriptionState::Pending);
        if !entry.shared.kind.requires_auth() {
            return out.send(frames::subscribe(name, "", None));
        }
        if !settings.can_authorize_channels {
            let error = WsError::Config(format!(
                "{name} needs authorization: configure a channel authorizer (WsConfig::with_channel_authorizer or with_channel_auth_endpoint)"
            ));
            return self.failed(name, error, out);
        }
        out.push(Output::Authorize(ChannelAuthRequest {
            socket_id: socket_id.to_owned(),
            channel_name: name.to_owned(),
        }));
    }

    /// The authorizer answered for the current connection: subscribe, or fail.
    pub fn authorized(
        &mut self,
        name: &str,
        result: Result<ChannelAuth, String>,
        out: &mut Outputs,
    ) {
        let Some(entry) = self.entries.get_mut(name) else {
            return;
        };
        let auth = match result {
            Ok(auth) => auth,
            Err(message) => {
                let target = name.to_owned();
                return self.failed(name, WsError::Auth { target, message }, out);
            }
        };
        if entry.shared.kind == ChannelKind::PrivateEncrypted {
            match auth
                .shared_secret
                .as_deref()
                .map(crypto::parse_shared_secret)
            {
                Some(Ok(key)) => entry.key = Some(key),
                other => {
                    let message = match other {
                        Some(Err(e)) => e,
                        _ => "the auth answer has no shared_secret".into(),
                    };
                    let target = name.to_owned();
                    return self.failed(name, WsError::Auth { target, message }, out);
                }
            }
        }
        entry.me = auth
            .channel_data
            .as_deref()
            .and_then(member_from_channel_data);
        out.send(frames::subscribe(
            name,
            &auth.auth,
            auth.channel_data.as_deref(),
        ));
    }

    /// A subscription failed on this side (authorization, configuration): reported as the
    /// server's refusals are.
    fn failed(&mut self, name: &str, error: WsError, out: &mut Outputs) {
        if let Some(entry) = self.entries.get(name) {
            let failed = SubscriptionState::Failed(error.clone());
            entry.shared.state.send_replace(failed);
        }
        let data = json!({"type": "AuthError", "error": error.to_string(), "status": null});
        out.error(error);
        out.emit(
            "pusher:subscription_error",
            Some(name),
            data.to_string(),
            None,
        );
    }

    pub fn succeeded(
        &mut self,
        channel: &ChannelName,
        presence: Option<&PresenceSnapshot>,
        out: &mut Outputs,
    ) {
        let Some(entry) = self.entries.get(channel.as_str()) else {
            return;
        };
        if entry.shared.kind == ChannelKind::Presence {
            let members = match presence {
                Some(p) => Members::from_snapshot(p, entry.me.clone()),
                None => Members::from_snapshot(&PresenceSnapshot::default(), entry.me.clone()),
            };
            if let Ok(mut m) = entry.shared.members.write() {
                *m = Some(members);
            }
        }
        entry
            .shared
            .state
            .send_replace(SubscriptionState::Subscribed);
        let data = presence.map_or_else(|| "{}".to_owned(), presence_data);
        out.emit(
            "pusher:subscription_succeeded",
            Some(channel.as_str()),
            data,
            None,
        );
    }

    pub fn refused(
        &mut self,
        channel: &ChannelName,
        refusal: SubscriptionRefusal,
        out: &mut Outputs,
    ) {
        let data = json!({
            "type": refusal.error_type,
            "error": refusal.error,
            "status": refusal.status,
        });
        let error = WsError::Subscription {
            channel: channel.as_str().to_owned(),
            error_type: refusal.error_type.unwrap_or_else(|| "Error".into()),
            message: refusal.error.unwrap_or_default(),
            status: refusal.status,
        };
        if let Some(entry) = self.entries.get(channel.as_str()) {
            let failed = SubscriptionState::Failed(error.clone());
            entry.shared.state.send_replace(failed);
        }
        out.error(error);
        out.emit(
            "pusher:subscription_error",
            Some(channel.as_str()),
            data.to_string(),
            None,
        );
    }

    pub fn member_added(
        &mut self,
        channel: &ChannelName,
        member: &PresenceMember,
        out: &mut Outputs,
    ) {
        let Some(added) = self.with_members(channel, |m| Some(m.add(member))) else {
            return;
        };
        let data = json!({"user_id": added.id, "user_info": added.info});
        out.emit(
            "pusher:member_added",
            Some(channel.as_str()),
            data.to_string(),
            None,
        );
    }

    pub fn member_removed(&mut self, channel: &ChannelName, user_id: &UserId, out: &mut Outputs) {
        let Some(removed) = self.with_members(channel, |m| m.remove(user_id.as_str())) else {
            return;
        };
        let data = json!({"user_id": removed.id});
        out.emit(
            "pusher:member_removed",
            Some(channel.as_str()),
            data.to_string(),
            None,
        );
    }

    /// Applies `change` to a presence channel's members, once it has them.
    fn with_members(
        &self,
        channel: &ChannelName,
        change: impl FnOnce(&mut Members) -> Option<Member>,
    ) -> Option<Member> {
        let entry = self.entries.get(channel.as_str())?;
        let mut guard = entry.shared.members.write().ok()?;
        guard.as_mut().and_then(change)
    }

    /// An event on a channel, decrypted first on an encrypted one.
    pub fn event(&self, e: ChannelEvent, out: &mut Outputs) {
        let name = e.channel.as_str();
        let user_id = e.user_id.as_ref().map(UserId::as_str);
        if e.channel.kind() != ChannelKind::PrivateEncrypted {
            return out.emit(e.event.as_str(), Some(name), e.data, user_id);
        }
        // Late events for a channel left are dropped: there is no key to read them.
        let Some(entry) = self.entries.get(name) else {
            return;
        };
        let decrypted = match entry.key {
            Some(key) => crypto::decrypt(&key, &e.data),
            None => Err("no key: the channel was never authorized".into()),
        };
        match decrypted {
            Ok(plain) => out.emit(e.event.as_str(), Some(name), plain, user_id),
            Err(message) => out.error(WsError::Decrypt {
                channel: name.to_owned(),
                message,
            }),
        }
    }

    /// The connection ended: confirmations and members go, the server-to-user channel too.
    pub fn connection_lost(&mut self) {
        self.entries
            .retain(|name, _| !name.starts_with(SERVER_TO_USER_PREFIX));
        for entry in self.entries.values() {
            entry.shared.state.send_if_modified(|s| {
                let was_subscribed = matches!(s, SubscriptionState::Subscribed);
                if was_subscribed {
                    *s = SubscriptionState::Pending;
                }
                was_subscribed
            });
            if let Ok(mut m) = entry.shared.members.write() {
                *m = None;
            }
        }
    }

    /// The client is done: every subscription fails with `error`, or ends.
    pub fn finish(&mut self, error: Option<WsError>) {
        for entry in self.entries.values() {
            let state = match &error {
                Some(e) => SubscriptionState::Failed(e.clone()),
                None => SubscriptionState::Unsubscribed,
            };
            entry.shared.state.send_replace(state);
        }
    }
}

/// `subscription_succeeded` data for the handlers, in its wire shape.
fn presence_data(p: &PresenceSnapshot) -> String {
    let ids: Vec<&str> = p.members.iter().map(|m| m.user_id.as_str()).collect();
    let hash: Map<String, Value> = p
        .members
        .iter()
        .map(|m| {
            let info = m
                .user_info
                .as_deref()
                .and_then(|raw| serde_json::from_str(raw).ok());
            (m.user_id.as_str().to_owned(), info.unwrap_or(Value::Null))
        })
        .collect();
    json!({"presence": {"ids": ids, "hash": hash, "count": p.count}}).to_string()
}
