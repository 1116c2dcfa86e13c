use std::sync::Arc;

use super::*;

fn opened(socket: &str) -> EventKind {
    EventKind::ConnectionOpened {
        socket_id: socket.into(),
        remote: None,
    }
}

fn socket_of(item: TapItem) -> String {
    match item {
        TapItem::Event(e) => match &e.kind {
            EventKind::ConnectionOpened { socket_id, .. } => socket_id.clone(),
            other => panic!("unexpected {other:?}"),
        },
        TapItem::Dropped(n) => panic!("dropped {n}"),
    }
}

#[test]
fn nothing_attached_means_the_event_is_never_built() {
    let monitor = Arc::new(Monitor::new("n", 8));
    assert!(!monitor.is_active());
    monitor.emit("a", || panic!("built although nobody listens"));
}

#[test]
fn an_attached_tap_gets_events_in_order_with_node_and_app() {
    let monitor = Arc::new(Monitor::new("n1", 8));
    let tap = monitor.attach(Filter::default());
    assert!(monitor.is_active());
    monitor.emit("a", || opened("1.1"));
    monitor.emit("b", || opened("1.2"));
    match tap.try_next() {
        Some(TapItem::Event(e)) => {
            assert_eq!((e.node.as_str(), e.app.as_str()), ("n1", "a"));
            assert!(e.at_ms > 0);
        }
        other => panic!("expected an event, got {other:?}"),
    }
    assert_eq!(socket_of(tap.try_next().expect("second event")), "1.2");
    assert_eq!(tap.try_next(), None);
}

#[test]
fn each_tap_gets_what_its_filter_lets_through() {
    let monitor = Arc::new(Monitor::new("n", 8));
    let only_a = monitor.attach(Filter {
        app: Some("a".into()),
        ..Filter::default()
    });
    let all = monitor.attach(Filter::default());
    monitor.emit("b", || opened("1.1"));
    monitor.emit("a", || opened("1.2"));
    assert_eq!(socket_of(only_a.try_next().expect("a's event")), "1.2");
    assert_eq!(only_a.try_next(), None);
    assert_eq!(socket_of(all.try_next().expect("first")), "1.1");
    assert_eq!(socket_of(all.try_next().expect("second")), "1.2");
}

#[test]
fn a_full_tap_drops_counts_and_reports_before_the_next_event() {
    let monitor = Arc::new(Monitor::new("n", 2));
    let tap = monitor.attach(Filter::default());
    for i in 0..5 {
        monitor.emit("a", || opened(&format!("1.{i}")));
    }
    assert_eq!(tap.try_next(), Some(TapItem::Dropped(3)));
    assert_eq!(socket_of(tap.try_next().expect("kept")), "1.0");
    assert_eq!(socket_of(tap.try_next().expect("kept")), "1.1");
    monitor.emit("a", || opened("1.9"));
    assert_eq!(socket_of(tap.try_next().expect("room again")), "1.9");
}

#[test]
fn a_slow_tap_does_not_hold_back_a_fast_one() {
    let monitor = Arc::new(Monitor::new("n", 1));
    let slow = monitor.attach(Filter::default());
    let fast = monitor.attach(Filter::default());
    for i in 0..3 {
        monitor.emit("a", || opened(&format!("1.{i}")));
        assert_eq!(
            socket_of(fast.try_next().expect("fast keeps up")),
            format!("1.{i}")
        );
    }
    assert_eq!(slow.try_next(), Some(TapItem::Dropped(2)));
}

#[test]
fn dropping_the_last_tap_switches_the_monitor_off() {
    let monitor = Arc::new(Monitor::new("n", 8));
    let first = monitor.attach(Filter::default());
    let second = monitor.attach(Filter::default());
    drop(first);
    assert!(monitor.is_active());
    assert_eq!(monitor.tap_count(), 1);
    drop(second);
    assert!(!monitor.is_active());
    monitor.emit("a", || panic!("built after every tap left"));
}

#[tokio::test]
async fn a_waiting_reader_wakes_on_the_next_event() {
    let monitor = Arc::new(Monitor::new("n", 8));
    let tap = monitor.attach(Filter::default());
    let reader = tokio::spawn(async move { socket_of(tap.next().await) });
    tokio::task::yield_now().await;
    monitor.emit("a", || opened("1.7"));
    let got = tokio::time::timeout(std::time::Duration::from_secs(5), reader)
        .await
        .expect("woken")
        .expect("reader ran");
    assert_eq!(got, "1.7");
}
