//! What `pusher:signin` must carry (docs/PROTOCOL.md, "Users: sign-in, watchlists,
//! server-to-user, terminate"), checked before the node hears of it, and what a session keeps
//! of a sign-in that succeeded.

use warren_protocol::auth::verify_user_auth;
use warren_protocol::user::{parse_user_data, UserChannel, UserData};
use warren_protocol::SocketId;

use crate::app::App;

/// A session's sign-in.
pub(super) struct SignedIn {
    pub data: UserData,
    /// The user was recorded as online cluster-wide (the app has watchlist events).
    pub online: bool,
    /// The users this connection is told about; empty when it watches nobody.
    pub watching: Vec<UserChannel>,
}

/// Checks the signature over `<socket_id>::user::<user_data>` (the exact text sent), then the
/// user data, with each secret of `secrets` (the app's current version). The error is the `pusher:error` message; the connection is closed with 4009.
pub(super) fn check(
    app: &App,
    secrets: &App,
    socket_id: SocketId,
    auth: &str,
    user_data: &str,
) -> Result<UserData, String> {
    let socket_id = socket_id.to_string();
    secrets
        .verify_with(|secret| {
            verify_user_auth(auth, app.key.as_str(), secret, &socket_id, user_data)
        })
        .map_err(|e| format!("Sign-in refused: {}", e.client_message(auth)))?;
    parse_user_data(user_data, app.member_limits)
        .map_err(|e| format!("Sign-in refused: invalid user_data: {e}"))
}
