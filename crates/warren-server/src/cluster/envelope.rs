//! How a [`ChannelEvent`] travels between nodes: a compact binary envelope, the same for every
//! backend that relays bytes (Redis pub/sub today).
//!
//! ```text
//! u8  version (2)
//! str origin      the sending process (receivers skip their own envelopes)
//! str except      socket id text, "" for none
//! str app
//! str channel
//! u8  kind        1 event | 2 member added | 3 member removed | 4 cache event | 5 count
//!                 | 6 user online | 7 user offline | 8 terminate user | 9 broadcast
//!                 | 10 member added, ordered | 11 member removed, ordered
//! kind 1: str name, str user id ("" for none), then the data to the end
//! kind 2: str user id, then the user_info JSON to the end ("" for none)
//! kind 3: the user id to the end
//! kind 4: str name, u64 seq, then the data to the end
//! kind 5: u64 count, u64 version
//! kinds 6-7: u64 version (the user is the one whose `#server-to-user-` channel it is)
//! kind 8: nothing more
//! kind 9: except, app and channel are "": str type, then the payload to the end
//! kinds 10-11: u64 version, then as kinds 2-3
//! ```
//! `u64` is big-endian.
//! `str` is a big-endian `u16` length and that many UTF-8 bytes. The fixed order lets a Redis
//! script that announces a presence change atomically append its own fields to a header
//! made here ([`header`]), without writing any Pusher JSON: the receiving node builds the
//! frame. Anything malformed decodes to `None` and is never trusted.
//!
//! Kinds 10 and 11 are presence announcements sent after the state change they announce,
//! with its version (a split of fan-out and state, `Broker::announce`): receivers order them
//! (`cluster::ordering`). Kinds 2 and 3 stay for announcements published with the change.
//!
//! Kinds 6 and 7 gained their version without a new format version on purpose: between nodes
//! of a rolling upgrade only user status notices fail to decode (and are dropped), not every
//! relayed event.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use warren_protocol::presence::PresenceMember;
use warren_protocol::{AppId, ChannelName, EventName, SocketId, UserId};

use super::broadcast::{Broadcast, BroadcastType};
use super::event::{ChannelEvent, ChannelMessage, UserNotice, UserStatus};
use super::BackendError;

const VERSION: u8 = 2;
const KIND_EVENT: u8 = 1;
const KIND_MEMBER_ADDED: u8 = 2;
/// Also written by the Redis leave script (`\3`).
const KIND_MEMBER_REMOVED: u8 = 3;
const KIND_CACHE_EVENT: u8 = 4;
const KIND_COUNT: u8 = 5;
/// Written by the Redis sign-in and sign-out scripts (`\6`, `\7`, then the version).
const KIND_USER_ONLINE: u8 = 6;
const KIND_USER_OFFLINE: u8 = 7;
const KIND_TERMINATE: u8 = 8;
/// A custom broadcast: for every node, not a channel (see `cluster::broadcast`).
const KIND_BROADCAST: u8 = 9;
/// Presence announcements carrying the version of their change.
const KIND_ORDERED_ADDED: u8 = 10;
const KIND_ORDERED_REMOVED: u8 = 11;
/// Names and ids read from an envelope are checked against the protocol's absolute maximum;
/// the sending node already applied the app's own limits.
const ANY_LENGTH: usize = 1000;

/// Encodes `event` as sent by `origin`.
pub fn encode(origin: &str, event: &ChannelEvent) -> Result<Bytes, BackendError> {
    let mut out = header(origin, event.except, &event.app)?;
    put_str(&mut out, event.channel.as_str())?;
    match &event.message {
        ChannelMessage::Event {
            name,
            data,
            user_id,
        } => {
            out.reserve(data.len() + name.as_str().len() + 8);
            out.put_u8(KIND_EVENT);
            put_str(&mut out, name.as_str())?;
            put_str(&mut out, user_id.as_ref().map_or("", UserId::as_str))?;
            out.put_slice(data.as_bytes());
        }
        ChannelMessage::MemberAdded(member) => {
            out.put_u8(KIND_MEMBER_ADDED);
            put_str(&mut out, member.user_id.as_str())?;
            out.put_slice(member.user_info.as_deref().unwrap_or("").as_bytes());
        }
        ChannelMessage::MemberRemoved { user_id } => {
            out.put_u8(KIND_MEMBER_REMOVED);
            out.put_slice(user_id.as_str().as_bytes());
        }
        ChannelMessage::CacheEvent { name, data, seq } => {
            out.reserve(data.len() + name.as_str().len() + 16);
            out.put_u8(KIND_CACHE_EVENT);
            put_str(&mut out, name.as_str())?;
            out.put_u64(*seq);
            out.put_slice(data.as_bytes());
        }
        ChannelMessage::SubscriptionCount { count, version } => {
            out.put_u8(KIND_COUNT);
            out.put_u64(*count);
            out.put_u64(*version);
        }
        ChannelMessage::User(UserNotice::Status(status)) => {
            out.put_u8(if status.online {
                KIND_USER_ONLINE
            } else {
                KIND_USER_OFFLINE
            });
            out.put_u64(status.version);
        }
        ChannelMessage::User(UserNotice::Terminate) => out.put_u8(KIND_TERMINATE),
    }
    Ok(out.freeze())
}

/// Encodes a presence announcement decided at `version` as sent by `origin` (kinds 10, 11);
/// anything but `member_added` / `member_removed` is refused.
pub fn encode_announcement(
    origin: &str,
    event: &ChannelEvent,
    version: u64,
) -> Result<Bytes, BackendError> {
    let mut out = header(origin, event.except, &event.app)?;
    put_str(&mut out, event.channel.as_str())?;
    match &event.message {
        ChannelMessage::MemberAdded(member) => {
            out.put_u8(KIND_ORDERED_ADDED);
            out.put_u64(version);
            put_str(&mut out, member.user_id.as_str())?;
            out.put_slice(member.user_info.as_deref().unwrap_or("").as_bytes());
        }
        ChannelMessage::MemberRemoved { user_id } => {
            out.put_u8(KIND_ORDERED_REMOVED);
            out.put_u64(version);
            out.put_slice(user_id.as_str().as_bytes());
        }
        _ => return Err(BackendError("only presence changes are announced".into())),
    }
    Ok(out.freeze())
}

/// Encodes a custom broadcast as sent by `origin`.
pub fn encode_broadcast(origin: &str, broadcast: &Broadcast) -> Result<Bytes, BackendError> {
    let mut out = BytesMut::with_capacity(16 + origin.len() + broadcast.payload.len());
    out.put_u8(VERSION);
    put_str(&mut out, origin)?;
    for _no_except_app_or_channel in 0..3 {
        put_str(&mut out, "")?;
    }
    out.put_u8(KIND_BROADCAST);
    put_str(&mut out, broadcast.kind.as_str())?;
    out.put_slice(&broadcast.payload);
    Ok(out.freeze())
}

/// The fields up to the channel: what a script needs to complete an envelope itself.
pub fn header(
    origin: &str,
    except: Option<SocketId>,
    app: &AppId,
) -> Result<BytesMut, BackendError> {
    let except = except.map(|s| s.to_string()).unwrap_or_default();
    let mut out = BytesMut::with_capacity(8 + origin.len() + except.len() + app.as_str().len());
    out.put_u8(VERSION);
    put_str(&mut out, origin)?;
    put_str(&mut out, &except)?;
    put_str(&mut out, app.as_str())?;
    Ok(out)
}

/// A decoded envelope.
#[derive(Debug, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub origin: &'a str,
    pub relayed: Relayed,
}

/// What an envelope carries.
#[derive(Debug, PartialEq, Eq)]
pub enum Relayed {
    Event(ChannelEvent),
    /// A presence announcement and the version of the change it announces.
    Announcement(ChannelEvent, u64),
    Broadcast(Broadcast),
}

/// Decodes an envelope; `None` for anything malformed.
pub fn decode(msg: &[u8]) -> Option<Envelope<'_>> {
    let (&version, rest) = msg.split_first()?;
    if version != VERSION {
        return None;
    }
    let (origin, rest) = take_str(rest)?;
    let (except, rest) = take_str(rest)?;
    let (app, rest) = take_str(rest)?;
    let (channel, rest) = take_str(rest)?;
    let (&kind, rest) = rest.split_first()?;
    if kind == KIND_BROADCAST {
        if !(except.is_empty() && app.is_empty() && channel.is_empty()) {
            return None;
        }
        let (kind, payload) = take_str(rest)?;
        let broadcast = Broadcast {
            kind: BroadcastType::parse(kind).ok()?,
            payload: Bytes::copy_from_slice(payload),
        };
        return Some(Envelope {
            origin,
            relayed: Relayed::Broadcast(broadcast),
        });
    }
    let user = |s: &str| UserId::parse(s, ANY_LENGTH).ok();
    // The ordered kinds are the plain ones after a version.
    let (kind, version, rest) = match kind {
        KIND_ORDERED_ADDED | KIND_ORDERED_REMOVED => {
            let (version, rest) = take_u64(rest)?;
            (kind - 8, Some(version), rest)
        }
        _ => (kind, None, rest),
    };
    let message = match kind {
        KIND_EVENT => {
            let (name, rest) = take_str(rest)?;
            let (user_id, data) = take_str(rest)?;
            ChannelMessage::Event {
                name: EventName::parse(name).ok()?,
                data: Arc::from(std::str::from_utf8(data).ok()?),
                user_id: if user_id.is_empty() {
                    None
                } else {
                    Some(user(user_id)?)
                },
            }
        }
        KIND_MEMBER_ADDED => {
            let (user_id, info) = take_str(rest)?;
            let info = std::str::from_utf8(info).ok()?;
            ChannelMessage::MemberAdded(PresenceMember {
                user_id: user(user_id)?,
                user_info: (!info.is_empty()).then(|| Arc::from(info)),
            })
        }
        KIND_MEMBER_REMOVED => ChannelMessage::MemberRemoved {
            user_id: user(std::str::from_utf8(rest).ok()?)?,
        },
        KIND_CACHE_EVENT => {
            let (name, rest) = take_str(rest)?;
            let (seq, data) = take_u64(rest)?;
            ChannelMessage::CacheEvent {
                name: EventName::parse(name).ok()?,
                data: Arc::from(std::str::from_utf8(data).ok()?),
                seq,
            }
        }
        KIND_COUNT => {
            let (count, rest) = take_u64(rest)?;
            let (version, rest) = take_u64(rest)?;
            if !rest.is_empty() {
                return None;
            }
            ChannelMessage::SubscriptionCount { count, version }
        }
        KIND_USER_ONLINE | KIND_USER_OFFLINE => {
            let (version, rest) = take_u64(rest)?;
            if !rest.is_empty() {
                return None;
            }
            ChannelMessage::User(UserNotice::Status(UserStatus {
                online: kind == KIND_USER_ONLINE,
                version,
            }))
        }
        KIND_TERMINATE if rest.is_empty() => ChannelMessage::User(UserNotice::Terminate),
        _ => return None,
    };
    let event = ChannelEvent {
        app: AppId::parse(app).ok()?,
        channel: ChannelName::parse(channel, ANY_LENGTH).ok()?,
        except: if except.is_empty() {
            None
        } else {
            Some(SocketId::parse(except).ok()?)
        },
        message,
    };
    let relayed = match version {
        Some(version) => Relayed::Announcement(event, version),
        None => Relayed::Event(event),
    };
    Some(Envelope { origin, relayed })
}

fn put_str(out: &mut BytesMut, s: &str) -> Result<(), BackendError> {
    let len = u16::try_from(s.len())
        .map_err(|_| BackendError(format!("{} bytes is too long to relay", s.len())))?;
    out.put_u16(len);
    out.put_slice(s.as_bytes());
    Ok(())
}

fn take_u64(buf: &[u8]) -> Option<(u64, &[u8])> {
    let (bytes, rest) = buf.split_first_chunk::<8>()?;
    Some((u64::from_be_bytes(*bytes), rest))
}

fn take_str(buf: &[u8]) -> Option<(&str, &[u8])> {
    let len = u16::from_be_bytes([*buf.first()?, *buf.get(1)?]) as usize;
    let rest = &buf[2..];
    if rest.len() < len {
        return None;
    }
    let (s, rest) = rest.split_at(len);
    Some((std::str::from_utf8(s).ok()?, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(message: ChannelMessage, except: Option<SocketId>) -> ChannelEvent {
        ChannelEvent {
            app: AppId::parse("app-1").unwrap(),
            channel: ChannelName::parse("presence-room", 200).unwrap(),
            except,
            message,
        }
    }

    fn event_of<'a>(envelope: &'a Envelope<'_>) -> &'a ChannelEvent {
        match &envelope.relayed {
            Relayed::Event(e) => e,
            other => panic!("not a plain event: {other:?}"),
        }
    }

    #[test]
    fn broadcasts_round_trip_and_need_empty_channel_fields() {
        let broadcast = Broadcast {
            kind: BroadcastType::parse("cache:flush").unwrap(),
            payload: Bytes::from_static(b"{\"key\":\"\xc3\xa9\"}\x00\xff"),
        };
        let bytes = encode_broadcast("n~1", &broadcast).unwrap();
        assert_eq!(
            decode(&bytes),
            Some(Envelope {
                origin: "n~1",
                relayed: Relayed::Broadcast(broadcast)
            })
        );
        let app = AppId::parse("a").unwrap();
        let mut for_an_app = header("n~1", None, &app).unwrap().to_vec();
        for_an_app.extend_from_slice(&[0, 0, 9, 0, 1, b't']);
        assert_eq!(decode(&for_an_app), None, "a broadcast names no app");
        let mut bad_type = vec![2, 0, 1, b'n', 0, 0, 0, 0, 0, 0, 9, 0, 3];
        bad_type.extend_from_slice(b"a b");
        assert_eq!(decode(&bad_type), None, "type names are checked");
    }

    fn round_trip(e: ChannelEvent) {
        let bytes = encode("node-1~ab", &e).unwrap();
        assert_eq!(
            decode(&bytes),
            Some(Envelope {
                origin: "node-1~ab",
                relayed: Relayed::Event(e)
            })
        );
    }

    #[test]
    fn every_kind_round_trips() {
        let user = UserId::parse("u-1", 128).unwrap();
        round_trip(event(
            ChannelMessage::Event {
                name: EventName::parse("client-typing").unwrap(),
                data: Arc::from("{\"x\":\"é\"}"),
                user_id: Some(user.clone()),
            },
            Some(SocketId::new(12, 34)),
        ));
        round_trip(event(
            ChannelMessage::Event {
                name: EventName::parse("my-event").unwrap(),
                data: Arc::from(""),
                user_id: None,
            },
            None,
        ));
        round_trip(event(
            ChannelMessage::MemberAdded(PresenceMember {
                user_id: user.clone(),
                user_info: Some(Arc::from("{\"name\":\"A\"}")),
            }),
            Some(SocketId::new(1, 2)),
        ));
        round_trip(event(
            ChannelMessage::MemberAdded(PresenceMember {
                user_id: user.clone(),
                user_info: None,
            }),
            None,
        ));
        round_trip(event(ChannelMessage::MemberRemoved { user_id: user }, None));
        round_trip(event(
            ChannelMessage::CacheEvent {
                name: EventName::parse("price").unwrap(),
                data: Arc::from("{\"v\":1}"),
                seq: 1_700_000_000_000_001,
            },
            Some(SocketId::new(5, 6)),
        ));
        round_trip(event(
            ChannelMessage::SubscriptionCount {
                count: 101,
                version: u64::MAX,
            },
            None,
        ));
        for notice in [
            UserNotice::Status(UserStatus {
                online: true,
                version: 1_700_000_000_000_001,
            }),
            UserNotice::Status(UserStatus {
                online: false,
                version: u64::MAX,
            }),
            UserNotice::Terminate,
        ] {
            round_trip(ChannelEvent {
                channel: ChannelName::parse("#server-to-user-u-1", 200).unwrap(),
                ..event(ChannelMessage::User(notice), None)
            });
        }
    }

    #[test]
    fn announcements_carry_their_version() {
        let user = UserId::parse("u-1", 128).unwrap();
        for (message, except) in [
            (
                ChannelMessage::MemberAdded(PresenceMember {
                    user_id: user.clone(),
                    user_info: Some(Arc::from("{\"n\":1}")),
                }),
                Some(SocketId::new(3, 4)),
            ),
            (ChannelMessage::MemberRemoved { user_id: user }, None),
        ] {
            let e = event(message, except);
            let bytes = encode_announcement("n~1", &e, 1_700_000_000_000_007).unwrap();
            let relayed = Relayed::Announcement(e, 1_700_000_000_000_007);
            assert_eq!(decode(&bytes).map(|d| d.relayed), Some(relayed));
        }
        let count = event(
            ChannelMessage::SubscriptionCount {
                count: 1,
                version: 1,
            },
            None,
        );
        assert!(encode_announcement("n~1", &count, 1).is_err());
        let app = AppId::parse("a").unwrap();
        let mut short = header("n~1", None, &app).unwrap().to_vec();
        short.extend_from_slice(&[0, 1, b'c', 11, 0, 0, 0, 1]);
        assert_eq!(
            decode(&short),
            None,
            "an announcement needs its whole version"
        );
    }

    /// What the Redis sign-in and sign-out scripts append to [`header`]: `u16 len, channel,
    /// \6 or \7, u64 version` (the scripts' `be64`).
    #[test]
    fn a_header_completed_as_the_user_scripts_do_decodes() {
        let app = AppId::parse("a").unwrap();
        for (kind, online) in [(6, true), (7, false)] {
            let mut bytes = header("n~1", None, &app).unwrap().to_vec();
            bytes.extend_from_slice(&[0, 17]);
            bytes.extend_from_slice(b"#server-to-user-7");
            bytes.push(kind);
            bytes.extend_from_slice(&[0, 0, 0, 0, 0, 0, 1, 2]);
            let decoded = decode(&bytes).unwrap();
            assert_eq!(
                event_of(&decoded).message,
                ChannelMessage::User(UserNotice::Status(UserStatus {
                    online,
                    version: 258
                }))
            );
            assert_eq!(event_of(&decoded).channel.as_str(), "#server-to-user-7");
            bytes.push(b'x');
            assert_eq!(decode(&bytes), None, "nothing may follow a user notice");
            bytes.truncate(bytes.len() - 2);
            assert_eq!(decode(&bytes), None, "a status needs its whole version");
        }
    }

    /// What the Redis leave script appends to [`header`]: `u16 len, channel, \3, user`.
    #[test]
    fn a_header_completed_as_the_leave_script_does_decodes() {
        let app = AppId::parse("a").unwrap();
        let mut bytes = header("n~1", None, &app).unwrap().to_vec();
        bytes.extend_from_slice(&[0, 10]);
        bytes.extend_from_slice(b"presence-x");
        bytes.push(3);
        bytes.extend_from_slice(b"42");
        let decoded = decode(&bytes).unwrap();
        assert_eq!(decoded.origin, "n~1");
        assert_eq!(
            event_of(&decoded).message,
            ChannelMessage::MemberRemoved {
                user_id: UserId::parse("42", 128).unwrap()
            }
        );
    }

    #[test]
    fn garbage_is_rejected() {
        assert_eq!(decode(b""), None);
        assert_eq!(decode(&[1, 0, 0]), None);
        assert_eq!(decode(&[2, 0, 5, b'a']), None);
        assert_eq!(decode(&[2, 0, 1, 0xff]), None);
        let app = AppId::parse("a").unwrap();
        let mut truncated = header("n", None, &app).unwrap().to_vec();
        truncated.extend_from_slice(&[0, 1, b'c', 99]);
        assert_eq!(decode(&truncated), None, "unknown kind");
        let mut short_count = header("n", None, &app).unwrap().to_vec();
        short_count.extend_from_slice(&[0, 1, b'c', 5, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(decode(&short_count), None, "count without a whole version");
        let mut bad_socket = vec![2, 0, 1, b'n', 0, 3, b'x', b'.', b'1'];
        bad_socket.extend_from_slice(&[0, 1, b'a', 0, 1, b'c', 3, b'u']);
        assert_eq!(decode(&bad_socket), None);
    }
}
