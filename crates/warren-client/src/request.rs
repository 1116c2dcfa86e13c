//! HTTP API requests, built and validated before anything is sent.

use serde::Serialize;
use warren_protocol::names::SERVER_TO_USER_PREFIX;
use warren_protocol::{ChannelName, EventName, SocketId};

use crate::error::ApiError;
use crate::types::ChannelAttribute;

/// Most channels one `trigger` may address.
pub const MAX_TRIGGER_CHANNELS: usize = 100;

/// Most events one `trigger_batch` may carry.
pub const MAX_BATCH_EVENTS: usize = 10;

/// Options of [`crate::Client::trigger`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TriggerOptions {
    /// The connection that caused the event; it does not receive it (`"123.456"`).
    pub socket_id: Option<String>,
    /// Channel attributes to return with the result (empty: none).
    pub info: Vec<ChannelAttribute>,
}

/// One event of [`crate::Client::trigger_batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchEvent {
    pub channel: String,
    /// The event name.
    pub name: String,
    /// The event's data string, sent verbatim (see [`encode_data`]).
    pub data: String,
    pub socket_id: Option<String>,
    pub info: Vec<ChannelAttribute>,
}

impl BatchEvent {
    /// An event whose data is `data` encoded as [`encode_data`] does: a string verbatim, any
    /// other value as its JSON text.
    ///
    /// ```
    /// use warren_client::BatchEvent;
    /// let a = BatchEvent::new("orders", "created", &serde_json::json!({"id": 7}))?;
    /// assert_eq!(a.data, r#"{"id":7}"#);
    /// let b = BatchEvent::new("orders", "note", "plain text")?;
    /// assert_eq!(b.data, "plain text");
    /// # Ok::<(), warren_client::ApiError>(())
    /// ```
    pub fn new<T: Serialize + ?Sized>(
        channel: impl Into<String>,
        name: impl Into<String>,
        data: &T,
    ) -> Result<Self, ApiError> {
        Ok(Self {
            channel: channel.into(),
            name: name.into(),
            data: encode_data(data)?,
            socket_id: None,
            info: Vec::new(),
        })
    }

    /// Excludes the connection with this socket id from delivery.
    pub fn with_socket_id(mut self, socket_id: impl Into<String>) -> Self {
        self.socket_id = Some(socket_id.into());
        self
    }

    /// Asks for these attributes of the event's channel in the result.
    pub fn with_info(mut self, info: impl IntoIterator<Item = ChannelAttribute>) -> Self {
        self.info = info.into_iter().collect();
        self
    }
}

/// Options of [`crate::Client::channels`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelsQuery {
    /// Only channels whose name starts with this (e.g. `presence-`).
    pub filter_by_prefix: Option<String>,
    /// Attributes to return per channel; `user_count` needs a `presence-` prefix filter.
    pub info: Vec<ChannelAttribute>,
}

/// The event data string the official SDKs send: a string value as is, any other value
/// serialized to JSON text.
///
/// ```
/// use warren_client::encode_data;
/// assert_eq!(encode_data("hello")?, "hello");
/// assert_eq!(encode_data(&serde_json::json!({"x": 1}))?, r#"{"x":1}"#);
/// assert_eq!(encode_data(&[1, 2])?, "[1,2]");
/// # Ok::<(), warren_client::ApiError>(())
/// ```
pub fn encode_data<T: Serialize + ?Sized>(data: &T) -> Result<String, ApiError> {
    let text = serde_json::to_string(data)
        .map_err(|e| ApiError::InvalidRequest(format!("event data does not serialize: {e}")))?;
    if text.starts_with('"') {
        serde_json::from_str::<String>(&text)
            .map_err(|e| ApiError::InvalidRequest(format!("event data does not serialize: {e}")))
    } else {
        Ok(text)
    }
}

/// One HTTP API call, validated but not yet signed or sent. Build it with the associated
/// functions, send it with [`crate::Client::execute`] to get the server's JSON text; the typed
/// methods of [`crate::Client`] do both and decode the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRequest {
    method: &'static str,
    /// Path below `/apps/{app_id}`, percent-encoded, starting with `/`.
    path: String,
    /// Extra query parameters (decoded values).
    params: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

#[derive(Serialize)]
struct EventBody<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channels: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    data: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    socket_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    info: Option<String>,
}

#[derive(Serialize)]
struct BatchBody<'a> {
    batch: Vec<EventBody<'a>>,
}

impl ApiRequest {
    /// `POST /events`: `event` with `data` (see [`encode_data`]) on up to 100 channels.
    pub fn trigger<C, T>(
        channels: C,
        event: &str,
        data: &T,
        options: &TriggerOptions,
    ) -> Result<Self, ApiError>
    where
        C: IntoIterator,
        C::Item: AsRef<str>,
        T: Serialize + ?Sized,
    {
        let channels: Vec<String> = channels
            .into_iter()
            .map(|c| c.as_ref().to_owned())
            .collect();
        if channels.is_empty() {
            return Err(invalid("at least one channel is required"));
        }
        if channels.len() > MAX_TRIGGER_CHANNELS {
            return Err(invalid(format!(
                "{} channels given; at most {MAX_TRIGGER_CHANNELS} per trigger",
                channels.len()
            )));
        }
        for channel in &channels {
            check_channel(channel)?;
        }
        check_event(event)?;
        let socket_id = options.socket_id.as_deref();
        if let Some(id) = socket_id {
            check_socket_id(id)?;
        }
        let data = encode_data(data)?;
        let body = EventBody {
            name: event,
            channels: Some(&channels),
            channel: None,
            data: &data,
            socket_id,
            info: info_param(&options.info),
        };
        Ok(Self::post("/events".to_owned(), &body))
    }

    /// `POST /batch_events`: up to 10 events, each on one channel.
    pub fn trigger_batch(events: &[BatchEvent]) -> Result<Self, ApiError> {
        if events.is_empty() {
            return Err(invalid("a batch needs at least one event"));
        }
        if events.len() > MAX_BATCH_EVENTS {
            return Err(invalid(format!(
                "{} events given; at most {MAX_BATCH_EVENTS} per batch",
                events.len()
            )));
        }
        let mut batch = Vec::with_capacity(events.len());
        for (i, event) in events.iter().enumerate() {
            let at = |e: ApiError| match e {
                ApiError::InvalidRequest(m) => invalid(format!("batch event {i}: {m}")),
                other => other,
            };
            check_channel(&event.channel).map_err(at)?;
            check_event(&event.name).map_err(at)?;
            if let Some(id) = &event.socket_id {
                check_socket_id(id).map_err(at)?;
            }
            batch.push(EventBody {
                name: &event.name,
                channels: None,
                channel: Some(&event.channel),
                data: &event.data,
                socket_id: event.socket_id.as_deref(),
                info: info_param(&event.info),
            });
        }
        Ok(Self::post("/batch_events".to_owned(), &BatchBody { batch }))
    }

    /// `GET /channels`: the occupied channels.
    pub fn channels(query: &ChannelsQuery) -> Result<Self, ApiError> {
        let mut params = Vec::new();
        if let Some(prefix) = &query.filter_by_prefix {
            params.push(("filter_by_prefix".to_owned(), prefix.clone()));
        }
        if let Some(info) = info_param(&query.info) {
            params.push(("info".to_owned(), info));
        }
        Ok(Self::get("/channels".to_owned(), params))
    }

    /// `GET /channels/{name}`: one channel's state.
    pub fn channel(name: &str, info: &[ChannelAttribute]) -> Result<Self, ApiError> {
        check_channel(name)?;
        let params = info_param(info)
            .map(|i| vec![("info".to_owned(), i)])
            .unwrap_or_default();
        Ok(Self::get(
            format!("/channels/{}", path_segment(name)?),
            params,
        ))
    }

    /// `GET /channels/{name}/users`: the users of a presence channel.
    pub fn users(channel: &str) -> Result<Self, ApiError> {
        check_channel(channel)?;
        Ok(Self::get(
            format!("/channels/{}/users", path_segment(channel)?),
            Vec::new(),
        ))
    }

    /// `POST /users/{user_id}/terminate_connections`.
    pub fn terminate_user_connections(user_id: &str) -> Result<Self, ApiError> {
        check_user_id(user_id)?;
        let path = format!("/users/{}/terminate_connections", path_segment(user_id)?);
        Ok(Self::post(path, &serde_json::json!({})))
    }

    /// `POST /events` to `#server-to-user-<user_id>`.
    pub fn send_to_user<T: Serialize + ?Sized>(
        user_id: &str,
        event: &str,
        data: &T,
    ) -> Result<Self, ApiError> {
        check_user_id(user_id)?;
        Self::trigger(
            [format!("{SERVER_TO_USER_PREFIX}{user_id}")],
            event,
            data,
            &TriggerOptions::default(),
        )
    }

    fn get(path: String, params: Vec<(String, String)>) -> Self {
        Self {
            method: "GET",
            path,
            params,
            body: None,
        }
    }

    fn post<B: Serialize>(path: String, body: &B) -> Self {
        // Serializing these plain structs of strings cannot fail; fall back to `{}` anyway
        // rather than panic.
        let body = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
        Self {
            method: "POST",
            path,
            params: Vec::new(),
            body: Some(body),
        }
    }

    /// `GET` or `POST`.
    pub fn method(&self) -> &'static str {
        self.method
    }

    /// The path below `/apps/{app_id}`, percent-encoded, e.g. `/channels/presence-room`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Query parameters other than the auth ones (values not yet percent-encoded).
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }

    /// The JSON body of a `POST`.
    pub fn body(&self) -> Option<&[u8]> {
        self.body.as_deref()
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::InvalidRequest(message.into())
}

fn info_param(info: &[ChannelAttribute]) -> Option<String> {
    (!info.is_empty()).then(|| ChannelAttribute::join(info))
}

/// Characters, lengths and prefixes as the protocol defines them. The length limit is left
/// to the server: apps may raise it above the protocol's default of 200.
pub(crate) fn check_channel(name: &str) -> Result<(), ApiError> {
    ChannelName::parse(name, usize::MAX)
        .map(drop)
        .map_err(|e| invalid(e.to_string()))
}

fn check_event(name: &str) -> Result<(), ApiError> {
    EventName::parse(name)
        .map(drop)
        .map_err(|e| invalid(e.to_string()))
}

pub(crate) fn check_socket_id(id: &str) -> Result<(), ApiError> {
    SocketId::parse(id)
        .map(drop)
        .map_err(|e| invalid(e.to_string()))
}

fn check_user_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() {
        Err(invalid("user id must not be empty"))
    } else {
        Ok(())
    }
}

/// True for bytes that may stand unescaped in a path segment (RFC 3986 `pchar`), except `+`,
/// which some servers read as a space.
fn path_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

/// True for the RFC 3986 unreserved bytes, the only ones left unescaped in query values.
fn query_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn percent_encode(s: &str, safe: fn(u8) -> bool) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if safe(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    out
}

/// A path segment, percent-encoded. `.` and `..` would be removed from the URL by path
/// normalization (escaped or not), so they are refused.
fn path_segment(s: &str) -> Result<String, ApiError> {
    if s == "." || s == ".." {
        return Err(invalid(format!(
            "{s:?} cannot be used in a URL path segment"
        )));
    }
    Ok(percent_encode(s, path_safe))
}

/// A query value (or key), percent-encoded.
pub(crate) fn query_component(s: &str) -> String {
    percent_encode(s, query_safe)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_json(req: &ApiRequest) -> serde_json::Value {
        serde_json::from_slice(req.body().expect("has a body")).expect("JSON body")
    }

    #[test]
    fn trigger_body_and_validation() {
        let req = ApiRequest::trigger(
            ["a", "presence-b"],
            "my-event",
            &serde_json::json!({"x": 1}),
            &TriggerOptions {
                socket_id: Some("1.2".into()),
                info: vec![ChannelAttribute::UserCount],
            },
        )
        .expect("valid");
        assert_eq!(req.method(), "POST");
        assert_eq!(req.path(), "/events");
        assert_eq!(
            body_json(&req),
            serde_json::json!({"name":"my-event","channels":["a","presence-b"],"data":"{\"x\":1}","socket_id":"1.2","info":"user_count"})
        );
        let plain = ApiRequest::trigger(vec!["a".to_string()], "e", "text", &Default::default())
            .expect("valid");
        assert_eq!(
            body_json(&plain),
            serde_json::json!({"name":"e","channels":["a"],"data":"text"})
        );

        let many: Vec<String> = (0..101).map(|i| format!("c{i}")).collect();
        let e = ApiRequest::trigger(&many, "e", "", &Default::default()).unwrap_err();
        assert!(e.to_string().contains("at most 100"), "{e}");
        assert!(ApiRequest::trigger(&many[..100], "e", "", &Default::default()).is_ok());
        let none: [&str; 0] = [];
        assert!(ApiRequest::trigger(none, "e", "", &Default::default()).is_err());
        let e = ApiRequest::trigger(["bad channel"], "e", "", &Default::default()).unwrap_err();
        assert!(matches!(e, ApiError::InvalidRequest(_)));
        assert!(ApiRequest::trigger(["a"], "", "", &Default::default()).is_err());
        let bad_socket = TriggerOptions {
            socket_id: Some("abc".into()),
            info: vec![],
        };
        assert!(ApiRequest::trigger(["a"], "e", "", &bad_socket).is_err());
    }

    #[test]
    fn batch_body_and_validation() {
        let events = vec![
            BatchEvent::new("a", "e1", "one")
                .expect("data")
                .with_info([ChannelAttribute::SubscriptionCount]),
            BatchEvent::new("b", "e2", &2)
                .expect("data")
                .with_socket_id("3.4"),
        ];
        let req = ApiRequest::trigger_batch(&events).expect("valid");
        assert_eq!(req.path(), "/batch_events");
        assert_eq!(
            body_json(&req),
            serde_json::json!({"batch":[
                {"name":"e1","channel":"a","data":"one","info":"subscription_count"},
                {"name":"e2","channel":"b","data":"2","socket_id":"3.4"}
            ]})
        );
        let eleven: Vec<BatchEvent> = (0..11)
            .map(|i| BatchEvent::new(format!("c{i}"), "e", "d").expect("data"))
            .collect();
        assert!(ApiRequest::trigger_batch(&eleven)
            .unwrap_err()
            .to_string()
            .contains("at most 10"));
        assert!(ApiRequest::trigger_batch(&[]).is_err());
        let bad = [
            BatchEvent::new("ok", "e", "d").expect("data"),
            BatchEvent::new("no way", "e", "d").expect("data"),
        ];
        let e = ApiRequest::trigger_batch(&bad).unwrap_err();
        assert!(e.to_string().contains("batch event 1"), "{e}");
    }

    #[test]
    fn get_requests() {
        let req = ApiRequest::channels(&ChannelsQuery {
            filter_by_prefix: Some("presence-".into()),
            info: vec![ChannelAttribute::UserCount],
        })
        .expect("valid");
        assert_eq!(req.method(), "GET");
        assert_eq!(
            req.params(),
            &[
                ("filter_by_prefix".to_owned(), "presence-".to_owned()),
                ("info".to_owned(), "user_count".to_owned())
            ]
        );
        assert!(req.body().is_none());
        let req = ApiRequest::channel("#server-to-user-a@b", &[]).expect("valid");
        assert_eq!(req.path(), "/channels/%23server-to-user-a@b");
        let req = ApiRequest::users("presence-x").expect("valid");
        assert_eq!(req.path(), "/channels/presence-x/users");
        assert!(ApiRequest::channel("..", &[]).is_err());
        let req = ApiRequest::terminate_user_connections("a b/c+d").expect("valid");
        assert_eq!(req.path(), "/users/a%20b%2Fc%2Bd/terminate_connections");
        assert_eq!(req.body(), Some(&b"{}"[..]));
        assert!(ApiRequest::terminate_user_connections("").is_err());
        let req = ApiRequest::send_to_user("42", "hello", "hi").expect("valid");
        assert_eq!(body_json(&req)["channels"][0], "#server-to-user-42");
    }

    #[test]
    fn encoding() {
        assert_eq!(
            query_component("user_count,x y&é"),
            "user_count%2Cx%20y%26%C3%A9"
        );
        assert_eq!(encode_data("\"quoted\"").expect("ok"), "\"quoted\"");
        assert_eq!(encode_data(&serde_json::json!("s")).expect("ok"), "s");
        assert_eq!(encode_data(&serde_json::Value::Null).expect("ok"), "null");
    }
}
