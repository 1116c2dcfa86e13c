//! Messages the server sends, decoded into types: the client's side of [`crate::outbound`].
//!
//! Every server-to-client message of protocol v7 has its variant. The invariant: decoding
//! never panics and never refuses a message only because its event name is new. An unknown
//! `pusher:` or `pusher_internal:` event becomes [`ServerMessage::Unknown`] (servers add
//! internal events and clients must skip them), and any other event name is an event on a
//! channel. A known message whose fields break the wire shape is a [`ServerMessageError`].
//!
//! `data` arrives as a JSON-encoded string everywhere except in `pusher:error` and
//! `pusher:subscription_error`, whose `data` is an object. Each decoder takes both forms, as
//! the official clients do. User ids may arrive as numbers (Laravel sends them so) and become
//! strings.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::names::{ChannelName, EventName, SocketId, UserId, MAX_CHANNEL_NAME_LENGTH};
use crate::presence::{user_id_from_json, PresenceMember};

/// One message from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMessage {
    /// `pusher:connection_established`. `activity_timeout` is `None` when the server gave
    /// none; the client then keeps its own.
    ConnectionEstablished {
        socket_id: SocketId,
        activity_timeout: Option<Duration>,
    },
    /// `pusher:error`. `code` is `None` for the non-fatal errors sent with `"code":null`.
    Error {
        code: Option<u16>,
        message: String,
    },
    Ping,
    Pong,
    /// `pusher_internal:subscription_succeeded`; presence channels list their members.
    SubscriptionSucceeded {
        channel: ChannelName,
        presence: Option<PresenceSnapshot>,
    },
    /// `pusher:subscription_error`: the server refused the subscription. `channel` is the
    /// name as the client asked for it, which may be no valid channel name (that can be why).
    SubscriptionError {
        channel: String,
        refusal: SubscriptionRefusal,
    },
    /// `pusher_internal:member_added`: a user's first connection joined the presence channel.
    MemberAdded {
        channel: ChannelName,
        member: PresenceMember,
    },
    /// `pusher_internal:member_removed`: a user's last connection left.
    MemberRemoved {
        channel: ChannelName,
        user_id: UserId,
    },
    /// `pusher:signin_success`.
    SigninSuccess(SignedInUser),
    /// `pusher_internal:watchlist_events`, about the users on the signed-in user's watchlist.
    WatchlistEvents(Vec<WatchlistEvent>),
    /// `pusher_internal:subscription_count`: how many connections a channel has.
    SubscriptionCount {
        channel: ChannelName,
        count: u64,
    },
    /// `pusher:cache_miss`: a cache channel had no cached event to replay.
    CacheMiss {
        channel: ChannelName,
    },
    /// An event on a channel: published through the HTTP API, or a client event.
    ChannelEvent(ChannelEvent),
    /// A `pusher:` or `pusher_internal:` event this version does not know, or an event for
    /// the connection itself, without a channel (a server extension's answer, which pusher-js
    /// hands to its global bindings). `data` is the data string (see [`ChannelEvent::data`]).
    Unknown {
        event: String,
        channel: Option<String>,
        data: Option<String>,
    },
}

/// The members a presence subscription starts with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PresenceSnapshot {
    /// Each member once: in the order of `ids`, then members found only in `hash`.
    pub members: Vec<PresenceMember>,
    /// The count as the server reported it (the number of members when it reported none).
    pub count: u64,
}

/// Why the server refused a subscription: `{"type", "error", "status"}`, each optional on
/// the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRefusal {
    /// `AuthError`, `LimitReached`...
    pub error_type: Option<String>,
    /// The human-readable reason.
    pub error: Option<String>,
    /// The HTTP-like status (401, 403...).
    pub status: Option<u16>,
}

/// The user a `pusher:signin_success` confirms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedInUser {
    pub id: UserId,
    /// `user_info` as raw JSON text, `None` when absent or `null`.
    pub user_info: Option<Arc<str>>,
    /// The user data string exactly as the server sent it (as signed).
    pub user_data: String,
}

/// Whether the users of a watchlist event came online or went offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UserStatus {
    Online,
    Offline,
}

/// One entry of `pusher_internal:watchlist_events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchlistEvent {
    pub status: UserStatus,
    pub user_ids: Vec<UserId>,
}

/// An event on a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelEvent {
    pub event: EventName,
    pub channel: ChannelName,
    /// The data string: the value of a JSON string, the raw JSON text of any other value, or
    /// empty when the message had no `data`.
    pub data: String,
    /// The sender of a client event on a presence channel.
    pub user_id: Option<UserId>,
}

/// Why a server message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerMessageError {
    #[error("not valid JSON")]
    NotJson,
    #[error("expected a JSON object")]
    NotAnObject,
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("message without an `event`")]
    MissingEvent,
    #[error("{event} without a `channel`")]
    MissingChannel { event: String },
    #[error("invalid {event}: {reason}")]
    BadData { event: String, reason: String },
}

impl ServerMessageError {
    /// The event name of the message, when it got that far.
    pub fn event(&self) -> Option<&str> {
        match self {
            Self::MissingChannel { event } | Self::BadData { event, .. } => Some(event),
            _ => None,
        }
    }
}

impl ServerMessage {
    /// Decodes one text frame from the server.
    pub fn parse(text: &str) -> Result<Self, ServerMessageError> {
        if !text.trim_start().starts_with('{') {
            return Err(match serde_json::from_str::<&RawValue>(text) {
                Ok(_) => ServerMessageError::NotAnObject,
                Err(_) => ServerMessageError::NotJson,
            });
        }
        let env: Envelope<'_> = serde_json::from_str(text).map_err(|e| {
            if e.is_syntax() || e.is_eof() {
                ServerMessageError::NotJson
            } else {
                ServerMessageError::Malformed(strip_position(&e))
            }
        })?;
        let event = env.event.ok_or(ServerMessageError::MissingEvent)?;
        Message {
            event: &event,
            channel: env.channel.as_deref(),
            data: env.data,
        }
        .decode(env.user_id)
    }

    /// The event name on the wire.
    pub fn event(&self) -> &str {
        match self {
            Self::ConnectionEstablished { .. } => CONNECTION_ESTABLISHED,
            Self::Error { .. } => ERROR,
            Self::Ping => PING,
            Self::Pong => PONG,
            Self::SubscriptionSucceeded { .. } => SUBSCRIPTION_SUCCEEDED,
            Self::SubscriptionError { .. } => SUBSCRIPTION_ERROR,
            Self::MemberAdded { .. } => MEMBER_ADDED,
            Self::MemberRemoved { .. } => MEMBER_REMOVED,
            Self::SigninSuccess(_) => SIGNIN_SUCCESS,
            Self::WatchlistEvents(_) => WATCHLIST_EVENTS,
            Self::SubscriptionCount { .. } => SUBSCRIPTION_COUNT,
            Self::CacheMiss { .. } => CACHE_MISS,
            Self::ChannelEvent(e) => e.event.as_str(),
            Self::Unknown { event, .. } => event,
        }
    }
}

const CONNECTION_ESTABLISHED: &str = "pusher:connection_established";
const ERROR: &str = "pusher:error";
const PING: &str = "pusher:ping";
const PONG: &str = "pusher:pong";
const SUBSCRIPTION_SUCCEEDED: &str = "pusher_internal:subscription_succeeded";
const SUBSCRIPTION_ERROR: &str = "pusher:subscription_error";
const MEMBER_ADDED: &str = "pusher_internal:member_added";
const MEMBER_REMOVED: &str = "pusher_internal:member_removed";
const SIGNIN_SUCCESS: &str = "pusher:signin_success";
const WATCHLIST_EVENTS: &str = "pusher_internal:watchlist_events";
const SUBSCRIPTION_COUNT: &str = "pusher_internal:subscription_count";
const CACHE_MISS: &str = "pusher:cache_miss";

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    channel: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    user_id: Option<&'a RawValue>,
}

/// The parts of a message every decoder needs, with the errors that name its event.
struct Message<'a> {
    event: &'a str,
    channel: Option<&'a str>,
    data: Option<&'a RawValue>,
}

impl Message<'_> {
    fn decode(self, user_id: Option<&RawValue>) -> Result<ServerMessage, ServerMessageError> {
        Ok(match self.event {
            CONNECTION_ESTABLISHED => self.connection_established()?,
            ERROR => {
                let d: ErrorData = self.object()?;
                ServerMessage::Error {
                    code: self.u16_field("code", d.code)?,
                    message: d.message,
                }
            }
            PING => ServerMessage::Ping,
            PONG => ServerMessage::Pong,
            SUBSCRIPTION_SUCCEEDED => ServerMessage::SubscriptionSucceeded {
                channel: self.channel()?,
                presence: self.presence()?,
            },
            SUBSCRIPTION_ERROR => ServerMessage::SubscriptionError {
                channel: self
                    .channel
                    .ok_or_else(|| ServerMessageError::MissingChannel {
                        event: self.event.to_owned(),
                    })?
                    .to_owned(),
                refusal: self.refusal()?,
            },
            MEMBER_ADDED => {
                let channel = self.channel()?;
                let member = self.object_with(|text| {
                    let d: MemberData<'_> = serde_json::from_str(text)?;
                    Ok(self.user_id(d.user_id).map(|user_id| PresenceMember {
                        user_id,
                        user_info: raw_info(d.user_info),
                    }))
                })??;
                ServerMessage::MemberAdded { channel, member }
            }
            MEMBER_REMOVED => {
                let channel = self.channel()?;
                let user_id = self.object_with(|text| {
                    let d: MemberData<'_> = serde_json::from_str(text)?;
                    Ok(self.user_id(d.user_id))
                })??;
                ServerMessage::MemberRemoved { channel, user_id }
            }
            SIGNIN_SUCCESS => ServerMessage::SigninSuccess(self.signin()?),
            WATCHLIST_EVENTS => ServerMessage::WatchlistEvents(self.watchlist()?),
            SUBSCRIPTION_COUNT => {
                let channel = self.channel()?;
                let d: CountData = self.object()?;
                ServerMessage::SubscriptionCount {
                    channel,
                    count: d.subscription_count,
                }
            }
            CACHE_MISS => ServerMessage::CacheMiss {
                channel: self.channel()?,
            },
            other
                if other.starts_with("pusher:")
                    || other.starts_with("pusher_internal:")
                    || self.channel.is_none() =>
            {
                ServerMessage::Unknown {
                    event: other.to_owned(),
                    channel: self.channel.map(str::to_owned),
                    data: self.data.map(|raw| data_text(raw).into_owned()),
                }
            }
            other => ServerMessage::ChannelEvent(ChannelEvent {
                event: EventName::parse(other).map_err(|e| self.bad(e))?,
                channel: self.channel()?,
                data: self
                    .data
                    .map_or_else(String::new, |raw| data_text(raw).into_owned()),
                user_id: match user_id {
                    Some(raw) if raw.get() != "null" => Some(self.user_id(raw)?),
                    _ => None,
                },
            }),
        })
    }

    fn bad(&self, reason: impl std::fmt::Display) -> ServerMessageError {
        ServerMessageError::BadData {
            event: self.event.to_owned(),
            reason: reason.to_string(),
        }
    }

    fn channel(&self) -> Result<ChannelName, ServerMessageError> {
        let name = self
            .channel
            .ok_or_else(|| ServerMessageError::MissingChannel {
                event: self.event.to_owned(),
            })?;
        ChannelName::parse(name, MAX_CHANNEL_NAME_LENGTH).map_err(|e| self.bad(e))
    }

    fn user_id(&self, raw: &RawValue) -> Result<UserId, ServerMessageError> {
        user_id_from_json(raw, usize::MAX).map_err(|e| self.bad(e))
    }

    fn u16_field(&self, name: &str, value: Option<u64>) -> Result<Option<u16>, ServerMessageError> {
        value
            .map(|v| {
                u16::try_from(v).map_err(|_| self.bad(format!("`{name}` {v} is out of range")))
            })
            .transpose()
    }

    /// Decodes the `data` object (sent as an object or as a JSON-encoded string) with
    /// `parse`, which may borrow from the text it is given.
    fn object_with<T>(
        &self,
        parse: impl FnOnce(&str) -> Result<T, serde_json::Error>,
    ) -> Result<T, ServerMessageError> {
        let raw = self.data.ok_or_else(|| self.bad("missing `data`"))?;
        let text = data_text(raw);
        if !text.trim_start().starts_with('{') {
            return Err(self.bad("`data` must be an object"));
        }
        parse(&text).map_err(|e| self.bad(strip_position(&e)))
    }

    fn object<T: serde::de::DeserializeOwned>(&self) -> Result<T, ServerMessageError> {
        self.object_with(|text| serde_json::from_str(text))
    }

    fn connection_established(&self) -> Result<ServerMessage, ServerMessageError> {
        let d: EstablishedData = self.object()?;
        Ok(ServerMessage::ConnectionEstablished {
            socket_id: SocketId::parse(&d.socket_id).map_err(|e| self.bad(e))?,
            activity_timeout: d.activity_timeout.map(Duration::from_secs),
        })
    }

    fn presence(&self) -> Result<Option<PresenceSnapshot>, ServerMessageError> {
        // Servers send "{}" (or nothing, or a non-object) for channels without presence.
        let Some(raw) = self.data else {
            return Ok(None);
        };
        if !data_text(raw).trim_start().starts_with('{') {
            return Ok(None);
        }
        self.object_with(|text| {
            let d: SucceededData<'_> = serde_json::from_str(text)?;
            Ok(d.presence.map(|p| self.snapshot(p)))
        })?
        .transpose()
    }

    fn snapshot(&self, p: PresenceData<'_>) -> Result<PresenceSnapshot, ServerMessageError> {
        let mut seen = HashSet::new();
        let mut members = Vec::with_capacity(p.ids.len().max(p.hash.len()));
        for raw in p.ids {
            let user_id = self.user_id(raw)?;
            if seen.insert(user_id.clone()) {
                let user_info = raw_info(p.hash.get(user_id.as_str()).copied());
                members.push(PresenceMember { user_id, user_info });
            }
        }
        for (id, info) in &p.hash {
            let user_id = UserId::parse(id, usize::MAX).map_err(|e| self.bad(e))?;
            if seen.insert(user_id.clone()) {
                let user_info = raw_info(Some(info));
                members.push(PresenceMember { user_id, user_info });
            }
        }
        Ok(PresenceSnapshot {
            count: p.count.unwrap_or(members.len() as u64),
            members,
        })
    }

    fn refusal(&self) -> Result<SubscriptionRefusal, ServerMessageError> {
        let text = self.data.map(data_text).unwrap_or_default();
        if !text.trim_start().starts_with('{') {
            // Some servers send the reason as a bare string.
            return Ok(SubscriptionRefusal {
                error_type: None,
                error: (!text.is_empty()).then(|| text.into_owned()),
                status: None,
            });
        }
        let d: RefusalData = self.object()?;
        Ok(SubscriptionRefusal {
            error_type: d.error_type,
            error: d.error,
            status: self.u16_field("status", d.status)?,
        })
    }

    fn signin(&self) -> Result<SignedInUser, ServerMessageError> {
        let d: SigninData = self.object()?;
        let user: UserData<'_> = serde_json::from_str(&d.user_data)
            .map_err(|e| self.bad(format!("user_data: {}", strip_position(&e))))?;
        let raw_id = user.id.ok_or_else(|| self.bad("user_data has no `id`"))?;
        Ok(SignedInUser {
            id: self.user_id(raw_id)?,
            user_info: raw_info(user.user_info),
            user_data: d.user_data.clone(),
        })
    }

    fn watchlist(&self) -> Result<Vec<WatchlistEvent>, ServerMessageError> {
        self.object_with(|text| {
            let d: WatchlistData<'_> = serde_json::from_str(text)?;
            Ok(d.events
                .into_iter()
                .map(|e| self.watchlist_event(e))
                .collect())
        })?
    }

    fn watchlist_event(&self, e: WatchlistEntry<'_>) -> Result<WatchlistEvent, ServerMessageError> {
        let status = match &*e.name {
            "online" => UserStatus::Online,
            "offline" => UserStatus::Offline,
            other => return Err(self.bad(format!("unknown watchlist event {other:?}"))),
        };
        let user_ids = e
            .user_ids
            .into_iter()
            .map(|raw| self.user_id(raw))
            .collect::<Result<_, _>>()?;
        Ok(WatchlistEvent { status, user_ids })
    }
}

#[derive(Deserialize)]
struct EstablishedData {
    socket_id: String,
    #[serde(default)]
    activity_timeout: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorData {
    #[serde(default)]
    code: Option<u64>,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct SucceededData<'a> {
    #[serde(borrow, default)]
    presence: Option<PresenceData<'a>>,
}

#[derive(Deserialize)]
struct PresenceData<'a> {
    #[serde(borrow, default)]
    ids: Vec<&'a RawValue>,
    #[serde(borrow, default)]
    hash: BTreeMap<String, &'a RawValue>,
    #[serde(default)]
    count: Option<u64>,
}

#[derive(Deserialize)]
struct RefusalData {
    #[serde(default, rename = "type")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    status: Option<u64>,
}

#[derive(Deserialize)]
struct MemberData<'a> {
    #[serde(borrow)]
    user_id: &'a RawValue,
    #[serde(borrow, default)]
    user_info: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct SigninData {
    user_data: String,
}

#[derive(Deserialize)]
struct UserData<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    user_info: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct WatchlistData<'a> {
    #[serde(borrow)]
    events: Vec<WatchlistEntry<'a>>,
}

#[derive(Deserialize)]
struct WatchlistEntry<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    user_ids: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct CountData {
    subscription_count: u64,
}

/// The text of `data`: a JSON string's value, or the raw text of any other JSON value.
fn data_text(raw: &RawValue) -> Cow<'_, str> {
    let text = raw.get();
    if text.starts_with('"') {
        // A RawValue is valid JSON, so a string always decodes.
        if let Ok(s) = serde_json::from_str::<String>(text) {
            return Cow::Owned(s);
        }
    }
    Cow::Borrowed(text)
}

/// `user_info` as raw JSON text; `null` is no info.
fn raw_info(raw: Option<&RawValue>) -> Option<Arc<str>> {
    raw.filter(|r| r.get() != "null")
        .map(|r| Arc::from(r.get()))
}

fn strip_position(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg,
    }
}

#[cfg(test)]
mod tests;
