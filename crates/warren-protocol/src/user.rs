//! Signed-in users (docs/PROTOCOL.md, "Users: sign-in, watchlists, server-to-user,
//! terminate"): the `user_data` a client signs in with, and the per-user channel that
//! server-to-user messages travel on.
//!
//! INVARIANT(user-has-a-channel): every signed-in user id, and every id on a watchlist, also
//! names a valid `#server-to-user-<id>` channel ([`UserChannel`]). The server routes
//! everything about one user (events, termination, online status) through that channel, so an
//! id that could not name it is refused at sign-in rather than half-supported.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::names::{ChannelName, NameError, UserId, SERVER_TO_USER_PREFIX};
use crate::presence::{user_id_from_json, ChannelDataError, MemberLimits};

/// Watchlist entries Pusher keeps; the rest are dropped (and the client told, with 4302).
pub const MAX_WATCHLIST: usize = 100;

/// A user id together with its `#server-to-user-<id>` channel: ids that cannot name that
/// channel (characters outside the channel alphabet) cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserChannel {
    user: UserId,
    channel: ChannelName,
}

impl UserChannel {
    /// The channel of `user`. The channel name is checked against the protocol's absolute
    /// maximum plus the prefix, since the user id was already checked against the app's limit.
    pub fn new(user: UserId) -> Result<Self, NameError> {
        let name = format!("{SERVER_TO_USER_PREFIX}{user}");
        let channel = ChannelName::parse(&name, name.len())?;
        Ok(Self { user, channel })
    }

    /// The user a `#server-to-user-<id>` channel belongs to; `None` for any other channel.
    pub fn of_channel(channel: &ChannelName) -> Option<Self> {
        let id = channel.server_to_user_id()?;
        let user = UserId::parse(id, id.len()).ok()?;
        Some(Self {
            user,
            channel: channel.clone(),
        })
    }

    pub fn user(&self) -> &UserId {
        &self.user
    }

    pub fn channel(&self) -> &ChannelName {
        &self.channel
    }
}

/// What a client signed in with, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserData {
    pub user: UserChannel,
    /// Raw JSON text, `None` when absent or `null`; used as the user's presence `user_info`.
    pub user_info: Option<Arc<str>>,
    /// At most [`MAX_WATCHLIST`] distinct ids, in the order given.
    pub watchlist: Vec<UserChannel>,
    /// The client sent more than [`MAX_WATCHLIST`] ids; only the first ones were kept.
    pub watchlist_truncated: bool,
}

/// Why `user_data` was refused; `Display` is sent in the `pusher:error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserDataError {
    #[error("user_data must be a JSON object with an id")]
    NotAnObject,
    #[error("user_data must contain a non-empty id")]
    MissingId,
    #[error("user_data id must be a string")]
    BadId,
    #[error("user_data id: {0}")]
    Id(NameError),
    #[error("user_info is larger than {max} bytes")]
    UserInfoTooLarge { max: usize },
    #[error("watchlist must be an array of user ids")]
    BadWatchlist,
}

#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    user_info: Option<&'a RawValue>,
    #[serde(borrow, default)]
    watchlist: Option<&'a RawValue>,
}

/// Parses `user_data` as signed by the app: `id` (a string; numbers keep their spelling, as
/// for presence), optional `user_info` (any JSON, `null` = none) and optional `watchlist` (an
/// array of ids; entries that are not usable user ids are skipped, duplicates kept once).
pub fn parse_user_data(text: &str, limits: MemberLimits) -> Result<UserData, UserDataError> {
    if !text.trim_start().starts_with('{') {
        return Err(UserDataError::NotAnObject);
    }
    let fields: Fields<'_> = serde_json::from_str(text).map_err(|_| UserDataError::NotAnObject)?;
    let raw_id = fields.id.ok_or(UserDataError::MissingId)?;
    let id = user_id_from_json(raw_id, limits.max_user_id_length).map_err(|e| match e {
        ChannelDataError::MissingUserId => UserDataError::MissingId,
        ChannelDataError::UserId(e) => UserDataError::Id(e),
        _ => UserDataError::BadId,
    })?;
    let user = UserChannel::new(id).map_err(UserDataError::Id)?;
    let user_info = match fields.user_info {
        None => None,
        Some(raw) if raw.get() == "null" => None,
        Some(raw) if raw.get().len() > limits.max_user_info_bytes => {
            return Err(UserDataError::UserInfoTooLarge {
                max: limits.max_user_info_bytes,
            })
        }
        Some(raw) => Some(Arc::from(raw.get())),
    };
    let (watchlist, watchlist_truncated) = match fields.watchlist {
        None => (Vec::new(), false),
        Some(raw) if raw.get() == "null" => (Vec::new(), false),
        Some(raw) => watchlist(raw, limits.max_user_id_length)?,
    };
    Ok(UserData {
        user,
        user_info,
        watchlist,
        watchlist_truncated,
    })
}

fn watchlist(raw: &RawValue, max_len: usize) -> Result<(Vec<UserChannel>, bool), UserDataError> {
    let entries: Vec<&RawValue> =
        serde_json::from_str(raw.get()).map_err(|_| UserDataError::BadWatchlist)?;
    let mut kept: Vec<UserChannel> = Vec::with_capacity(entries.len().min(MAX_WATCHLIST));
    let mut truncated = false;
    for entry in entries {
        let Ok(id) = user_id_from_json(entry, max_len) else {
            continue;
        };
        let Ok(user) = UserChannel::new(id) else {
            continue;
        };
        if kept.contains(&user) {
            continue;
        }
        if kept.len() == MAX_WATCHLIST {
            truncated = true;
            break;
        }
        kept.push(user);
    }
    Ok((kept, truncated))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: MemberLimits = MemberLimits {
        max_user_id_length: 16,
        max_user_info_bytes: 32,
    };

    fn ids(list: &[UserChannel]) -> Vec<&str> {
        list.iter().map(|u| u.user().as_str()).collect()
    }

    #[test]
    fn id_info_and_watchlist() {
        let d = parse_user_data(
            r#"{"id":"1","user_info":{"name":"A"},"watchlist":["2",3,"2","bad id",null]}"#,
            LIMITS,
        )
        .unwrap();
        assert_eq!(d.user.user().as_str(), "1");
        assert_eq!(d.user.channel().as_str(), "#server-to-user-1");
        assert_eq!(d.user_info.as_deref(), Some(r#"{"name":"A"}"#));
        assert_eq!(ids(&d.watchlist), ["2", "3"]);
        assert!(!d.watchlist_truncated);
        let d = parse_user_data(r#"{"id":42,"user_info":null}"#, LIMITS).unwrap();
        assert_eq!(d.user.user().as_str(), "42");
        assert_eq!(d.user_info, None);
        assert!(d.watchlist.is_empty());
    }

    #[test]
    fn refused_user_data() {
        let p = |s: &str| parse_user_data(s, LIMITS).unwrap_err();
        assert_eq!(p("[]"), UserDataError::NotAnObject);
        assert_eq!(p("{"), UserDataError::NotAnObject);
        assert_eq!(p("{}"), UserDataError::MissingId);
        assert_eq!(p(r#"{"id":null}"#), UserDataError::MissingId);
        assert!(matches!(p(r#"{"id":""}"#), UserDataError::Id(_)));
        assert_eq!(p(r#"{"id":true}"#), UserDataError::BadId);
        assert!(matches!(p(r#"{"id":"a b"}"#), UserDataError::Id(_)));
        assert!(matches!(
            p(r#"{"id":"0123456789abcdefg"}"#),
            UserDataError::Id(_)
        ));
        assert_eq!(
            p(r#"{"id":"1","user_info":{"name":"a name that is far too long"}}"#),
            UserDataError::UserInfoTooLarge { max: 32 }
        );
        assert_eq!(
            p(r#"{"id":"1","watchlist":"2"}"#),
            UserDataError::BadWatchlist
        );
    }

    #[test]
    fn watchlists_keep_the_first_hundred() {
        let list: Vec<String> = (0..150).map(|i| format!("u{i}")).collect();
        let text = serde_json::json!({"id":"me","watchlist":list}).to_string();
        let d = parse_user_data(&text, LIMITS).unwrap();
        assert_eq!(d.watchlist.len(), MAX_WATCHLIST);
        assert_eq!(d.watchlist[99].user().as_str(), "u99");
        assert!(d.watchlist_truncated);
        let exactly: Vec<String> = (0..100).map(|i| format!("u{i}")).collect();
        let text = serde_json::json!({"id":"me","watchlist":exactly}).to_string();
        assert!(!parse_user_data(&text, LIMITS).unwrap().watchlist_truncated);
    }

    #[test]
    fn user_channels_round_trip() {
        let u = UserChannel::new(UserId::parse("a@b.c", 128).unwrap()).unwrap();
        assert_eq!(UserChannel::of_channel(u.channel()), Some(u));
        let public = ChannelName::parse("news", 200).unwrap();
        assert_eq!(UserChannel::of_channel(&public), None);
    }
}
