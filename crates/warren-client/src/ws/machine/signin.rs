//! The user sign-in (`pusher:signin`): wanted once, renewed on every connection.
//!
//! At most one sign-in is in flight per connection: callers asking while it is join the same
//! wait, and a connection's loss forgets the flight but not the wish.

use std::sync::Arc;

use warren_protocol::names::SERVER_TO_USER_PREFIX;
use warren_protocol::server_message::SignedInUser;

use super::{Output, Outputs};
use crate::auth::UserAuth;
use crate::ws::command::Reply;
use crate::ws::{frames, ChannelShared, SignedIn, WsError};

#[derive(Default)]
pub(super) struct Signin(State);

#[derive(Default)]
enum State {
    #[default]
    Off,
    /// Sign in as soon as possible; these callers wait for the outcome. `in_flight`: the
    /// authenticator runs, or the server's answer is awaited, on the current connection.
    Wanted {
        waiting: Vec<Reply<SignedIn>>,
        in_flight: bool,
    },
    Done(SignedIn),
}

impl Signin {
    /// A caller wants the connection signed in; `socket_id` is the current connection's.
    pub fn want(&mut self, reply: Reply<SignedIn>, socket_id: Option<&str>, out: &mut Outputs) {
        match &mut self.0 {
            State::Done(user) => {
                let _ = reply.send(Ok(user.clone()));
                return;
            }
            State::Wanted { waiting, .. } => waiting.push(reply),
            State::Off => {
                self.0 = State::Wanted {
                    waiting: vec![reply],
                    in_flight: false,
                }
            }
        }
        if let Some(socket_id) = socket_id {
            self.connected(socket_id, out);
        }
    }

    /// A connection is established: start the sign-in if one is wanted.
    pub fn connected(&mut self, socket_id: &str, out: &mut Outputs) {
        if let State::Wanted { in_flight, .. } = &mut self.0 {
            if !*in_flight {
                *in_flight = true;
                out.push(Output::Authenticate {
                    socket_id: socket_id.to_owned(),
                });
            }
        }
    }

    /// The authenticator answered for the current connection.
    pub fn authenticated(&mut self, result: Result<UserAuth, String>, out: &mut Outputs) {
        if !matches!(
            self.0,
            State::Wanted {
                in_flight: true,
                ..
            }
        ) {
            return;
        }
        match result {
            Ok(user) => out.send(frames::signin(&user.auth, &user.user_data)),
            Err(message) => {
                let error = WsError::Auth {
                    target: "user sign-in".into(),
                    message,
                };
                self.failed(error.clone());
                out.error(error);
            }
        }
    }

    /// The sign-in in flight failed (a `pusher:error` while it is, is its answer).
    pub fn failed(&mut self, error: WsError) {
        if matches!(
            self.0,
            State::Wanted {
                in_flight: true,
                ..
            }
        ) {
            self.finish(error);
        }
    }

    /// `pusher:signin_success`: answers the callers, and gives the user's server-to-user
    /// channel to subscribe to.
    pub fn succeeded(&mut self, user: SignedInUser) -> Arc<ChannelShared> {
        let signed = SignedIn {
            id: user.id.to_string(),
            // The protocol keeps user_info as the JSON text it arrived as: it parses.
            user_info: user
                .user_info
                .as_deref()
                .and_then(|raw| serde_json::from_str(raw).ok()),
            user_data: user.user_data,
        };
        let channel = format!("{SERVER_TO_USER_PREFIX}{}", signed.id);
        if let State::Wanted { waiting, .. } =
            std::mem::replace(&mut self.0, State::Done(signed.clone()))
        {
            for reply in waiting {
                let _ = reply.send(Ok(signed.clone()));
            }
        }
        Arc::new(ChannelShared::new(&channel))
    }

    /// The connection is gone: a sign-in is redone on the next one.
    pub fn connection_lost(&mut self) {
        match &mut self.0 {
            State::Done(_) => {
                self.0 = State::Wanted {
                    waiting: Vec::new(),
                    in_flight: false,
                }
            }
            State::Wanted { in_flight, .. } => *in_flight = false,
            State::Off => {}
        }
    }

    /// The client is done: the callers still waiting learn why.
    pub fn finish(&mut self, error: WsError) {
        if let State::Wanted { waiting, .. } = std::mem::take(&mut self.0) {
            for reply in waiting {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}
