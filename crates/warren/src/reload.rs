//! `SIGHUP` reloads what can change without a restart: today the TLS certificate and key
//! (`[server.tls]`). Connections stay open; a file that does not load is logged and the
//! current certificate kept.

use warren_server::TlsReloader;

/// Reloads on every `SIGHUP` for the life of the process. The handler is in place when this
/// returns, so a `SIGHUP` right after start-up reloads instead of ending the process.
pub fn on_sighup(tls: TlsReloader) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::hangup()) {
            Ok(mut hangups) => {
                tokio::spawn(async move {
                    while hangups.recv().await.is_some() {
                        tls.reload_logged();
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen for SIGHUP: no TLS reloads"),
        }
    }
    #[cfg(not(unix))]
    drop(tls);
}
