//! Which events a tap wants: an app, a channel prefix, an event name. A pure decision, so
//! every node can apply it the same way.

use super::event::MonitorEvent;

/// What a tap asks for; an empty field asks for everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this app's events.
    pub app: Option<String>,
    /// Only events on channels whose names start with this. Events without a channel
    /// (connections, traffic, webhooks) are left out when it is set.
    pub channel_prefix: Option<String>,
    /// Only events with this name (API publishes, client events); others are left out when it
    /// is set.
    pub event: Option<String>,
}

impl Filter {
    pub fn matches(&self, e: &MonitorEvent) -> bool {
        if self.app.as_deref().is_some_and(|app| app != e.app) {
            return false;
        }
        if let Some(prefix) = &self.channel_prefix {
            if !e
                .kind
                .channel()
                .is_some_and(|c| c.starts_with(prefix.as_str()))
            {
                return false;
            }
        }
        if let Some(name) = &self.event {
            if e.kind.event_name() != Some(name.as_str()) {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::event::EventKind;
    use super::*;

    fn event(app: &str, kind: EventKind) -> MonitorEvent {
        MonitorEvent {
            node: "n".into(),
            at_ms: 0,
            app: app.into(),
            kind,
        }
    }

    fn publish(channel: &str, name: &str) -> EventKind {
        EventKind::ApiPublish {
            channel: channel.into(),
            event: name.into(),
            data: String::new(),
            except: None,
        }
    }

    fn opened() -> EventKind {
        EventKind::ConnectionOpened {
            socket_id: "1.2".into(),
            remote: None,
        }
    }

    #[test]
    fn an_empty_filter_takes_everything() {
        let f = Filter::default();
        assert!(f.matches(&event("a", opened())));
        assert!(f.matches(&event("b", publish("c", "e"))));
    }

    #[test]
    fn app_must_be_equal() {
        let f = Filter {
            app: Some("a".into()),
            ..Filter::default()
        };
        assert!(f.matches(&event("a", opened())));
        assert!(!f.matches(&event("ab", opened())));
    }

    #[test]
    fn channel_prefix_keeps_only_events_on_matching_channels() {
        let f = Filter {
            channel_prefix: Some("private-".into()),
            ..Filter::default()
        };
        assert!(f.matches(&event("a", publish("private-x", "e"))));
        assert!(!f.matches(&event("a", publish("public", "e"))));
        assert!(!f.matches(&event("a", opened())));
        let member = EventKind::MemberAdded {
            channel: "private-y".into(),
            user_id: "u".into(),
        };
        assert!(f.matches(&event("a", member)));
    }

    #[test]
    fn event_name_keeps_only_events_of_that_name() {
        let f = Filter {
            event: Some("created".into()),
            ..Filter::default()
        };
        assert!(f.matches(&event("a", publish("c", "created"))));
        assert!(!f.matches(&event("a", publish("c", "deleted"))));
        let subscribed = EventKind::Subscribed {
            socket_id: "1.2".into(),
            channel: "c".into(),
        };
        assert!(!f.matches(&event("a", subscribed)));
    }
}
