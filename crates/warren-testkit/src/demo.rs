//! The credentials of the demo app that the default configuration serves.

/// The demo app's id.
pub const APP_ID: &str = "app-id";
/// The demo app's key.
pub const KEY: &str = "app-key";
/// The demo app's secret.
pub const SECRET: &str = "app-secret";
/// A master key for `private-encrypted-` channels. The server never sees it (the shared
/// secret is derived by whoever signs), so any 32-byte base64 key serves.
pub const MASTER_KEY: &str = "zyrm8pvV2C9fJcBfhyXzvxbJVN/H7QLmbe0xJi1GhPU=";
