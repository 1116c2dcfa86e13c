//! What a connection reports to the monitor and the metrics: its opening, its traffic now and
//! then (monitor), and its end with the reason (and the final counts for the monitor). Each
//! is one atomic load when nobody watches, and one branch when metrics are off.

use super::session::Session;
use super::socket::{End, Socket};
use crate::metrics::Ended;
use crate::monitor::{EventKind, TRAFFIC_REPORT_EVERY};
use crate::transport::Transport;

pub(super) fn opened(session: &Session, stream: &Transport) {
    let (metrics, app_id) = session.metrics();
    metrics.opened(app_id);
    let (monitor, app, socket) = session.watched_as();
    monitor.emit(app, || EventKind::ConnectionOpened {
        socket_id: socket.to_string(),
        remote: stream.peer_addr().ok().map(|a| a.to_string()),
    });
}

/// After handling input: the counts so far, at most every [`TRAFFIC_REPORT_EVERY`].
pub(super) fn traffic_if_due(socket: &mut Socket, session: &Session) {
    let (monitor, app, id) = session.watched_as();
    if !monitor.is_active() {
        return;
    }
    let every = u64::try_from(TRAFFIC_REPORT_EVERY.as_millis()).unwrap_or(u64::MAX);
    if let Some(traffic) = socket.traffic_due(every) {
        monitor.emit(app, || EventKind::Traffic {
            socket_id: id.to_string(),
            traffic,
        });
    }
}

pub(super) fn closed(socket: &Socket, session: &Session, end: &End) {
    let (metrics, app_id) = session.metrics();
    metrics.closed(
        app_id,
        match end {
            End::ClientClosed => Ended::ClientClosed,
            End::ClientGone => Ended::ClientGone,
            End::WriteFailed => Ended::WriteFailed,
            End::ServerClosed(code) => Ended::ServerClosed(*code),
        },
    );
    let (monitor, app, id) = session.watched_as();
    monitor.emit(app, || {
        let (reason, code) = match end {
            End::ClientClosed => ("client closed", None),
            End::ClientGone => ("client gone", None),
            End::WriteFailed => ("write failed", None),
            End::ServerClosed(code) => ("server closed", Some(*code)),
        };
        EventKind::ConnectionClosed {
            socket_id: id.to_string(),
            reason: reason.into(),
            code,
            traffic: socket.traffic(),
        }
    });
}
