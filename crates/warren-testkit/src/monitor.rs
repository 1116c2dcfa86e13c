//! The monitor stream (`GET /monitor`, Server-Sent Events) read line by line, signed with the
//! demo app's key and secret or sent with an operator token.

use std::time::Duration;

use serde_json::Value;

use crate::signing::{now_secs, signed_target};
use crate::{Endpoint, KEY, SECRET, WAIT};

/// An open monitor stream.
pub struct MonitorStream {
    response: reqwest::Response,
    buffered: String,
}

/// How to authenticate.
pub enum MonitorAuth<'a> {
    /// Signed with this key and secret.
    Signed(&'a str, &'a str),
    /// `Authorization: Bearer <token>`.
    Token(&'a str),
}

/// The demo app's signature.
pub const DEMO: MonitorAuth<'static> = MonitorAuth::Signed(KEY, SECRET);

/// Opens `/monitor` with `params`; the status and body when the server refuses.
pub async fn open_monitor(
    to: &impl Endpoint,
    auth: MonitorAuth<'_>,
    params: &[(&str, &str)],
) -> Result<MonitorStream, (u16, String)> {
    let client = reqwest::Client::new();
    let request = match auth {
        MonitorAuth::Signed(key, secret) => {
            let target = signed_target("GET", "/monitor", params, "", key, secret, now_secs());
            client.get(format!("{}{target}", to.http_url()))
        }
        MonitorAuth::Token(token) => client
            .get(format!("{}/monitor", to.http_url()))
            .query(params)
            .bearer_auth(token),
    };
    let response = tokio::time::timeout(WAIT, request.send())
        .await
        .expect("answer in time")
        .expect("request sent");
    let status = response.status().as_u16();
    if status != 200 {
        return Err((status, response.text().await.unwrap_or_default()));
    }
    let mut stream = MonitorStream {
        response,
        buffered: String::new(),
    };
    let hello = stream.next_within(WAIT).await.expect("the attached line");
    assert_eq!(hello["type"], "attached", "{hello}");
    Ok(stream)
}

impl MonitorStream {
    /// The next JSON object of the stream, if one comes within `within`.
    pub async fn next_within(&mut self, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(end) = self.buffered.find('\n') {
                let line: String = self.buffered.drain(..=end).collect();
                if let Some(data) = line.trim_end().strip_prefix("data: ") {
                    return Some(serde_json::from_str(data).expect("a JSON object per line"));
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?
                .expect("stream readable")?;
            self.buffered.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next object of type `kind` (others are skipped), within [`WAIT`].
    pub async fn next_of(&mut self, kind: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await {
                Some(v) if v["type"] == kind => return v,
                Some(_) => {}
                None => panic!("no {kind} event within {WAIT:?}"),
            }
        }
    }

    /// Every object that arrives within `within`.
    pub async fn drain(&mut self, within: Duration) -> Vec<Value> {
        let mut all = Vec::new();
        while let Some(v) = self.next_within(within).await {
            all.push(v);
        }
        all
    }
}
