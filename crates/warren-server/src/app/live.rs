//! [`LiveApps`]: the apps as one immutable snapshot behind an atomic pointer, replaced whole.
//!
//! Lookups load the pointer and read a map: they never wait, whatever a writer does. A
//! replacement (from the configuration file on `SIGHUP`, or from PostgreSQL) builds the next
//! snapshot aside and swaps it in; every source goes through [`LiveApps::replace`], so the
//! rules of a change are written once.
//!
//! INVARIANT(retired-app-closes): when an app is disabled, removed or re-keyed, the lifecycle
//! every version of it shares is marked retired after the swap, and the caller then closes the
//! registered connections of retired apps. A connection checks the mark after it entered the
//! registry, so one admitted with an older version during the swap is either seen by that
//! walk or sees the mark itself (both sides use sequentially consistent operations). A
//! re-enabled app is unmarked; a re-keyed one starts a new lifecycle.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use tokio::sync::watch;
use warren_protocol::AppId;

use super::{App, AppRegistry, Retired};

/// One version of every app, by key and by id.
#[derive(Debug, Default)]
struct Snapshot {
    by_key: HashMap<String, Arc<App>>,
    by_id: HashMap<String, Arc<App>>,
}

/// What a replacement changed, by app id (for the log, and for the caller to close the
/// connections of retired versions when `retired` is true).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AppsChange {
    pub added: Vec<AppId>,
    /// Settings (or the previous secret) changed; the app stays enabled under the same key.
    pub changed: Vec<AppId>,
    /// Now disabled: connections with the version before close with 4003.
    pub disabled: Vec<AppId>,
    /// Gone, or known by another key now: connections with the version before close with 4001.
    pub removed: Vec<AppId>,
}

impl AppsChange {
    /// Whether any version was retired (some connections may have to close).
    pub fn retired(&self) -> bool {
        !self.disabled.is_empty() || !self.removed.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && !self.retired()
    }
}

/// Apps that can be replaced while the server runs.
#[derive(Debug)]
pub struct LiveApps {
    current: ArcSwap<Snapshot>,
    /// False until the first replacement of a registry made empty (a database not read yet).
    ready: AtomicBool,
    /// One replacement at a time: each reads the snapshot it replaces.
    writer: Mutex<()>,
    /// Counts the replacements that changed something, for those who follow the apps
    /// (the webhook endpoints).
    changes: watch::Sender<u64>,
}

impl LiveApps {
    /// These apps, ready.
    pub fn new(apps: impl IntoIterator<Item = App>) -> Self {
        let me = Self::empty();
        me.replace(apps);
        me
    }

    /// No apps, and not ready (`/ready` answers 503) until the first [`LiveApps::replace`].
    pub fn empty() -> Self {
        LiveApps {
            current: ArcSwap::from_pointee(Snapshot::default()),
            ready: AtomicBool::new(false),
            writer: Mutex::new(()),
            changes: watch::Sender::new(0),
        }
    }

    /// Told after every replacement that changed an app (the snapshot is already swapped).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Makes `apps` the set of apps and says what changed. Each app keeps its connection
    /// count from the version it replaces; versions disabled, removed or re-keyed are marked
    /// retired (the caller closes their connections: `Connections::close_retired`).
    pub fn replace(&self, apps: impl IntoIterator<Item = App>) -> AppsChange {
        self.replace_keeping(apps, &[])
    }

    /// As [`LiveApps::replace`], but the apps of `keep` (ids) that `apps` lacks stay as they
    /// are: a source that could not read them (a bad database row) does not remove them.
    pub fn replace_keeping(
        &self,
        apps: impl IntoIterator<Item = App>,
        keep: &[String],
    ) -> AppsChange {
        let _one_writer = self.writer.lock();
        let old = self.current.load_full();
        let mut next = Snapshot::default();
        let mut change = AppsChange::default();
        let mut enabled = Vec::new();
        for kept in keep.iter().filter_map(|id| old.by_id.get(id)) {
            next.by_key.insert(kept.key.to_string(), kept.clone());
            next.by_id.insert(kept.id.to_string(), kept.clone());
        }
        for mut app in apps {
            let before = old.by_id.get(app.id.as_str());
            match before {
                None => change.added.push(app.id.clone()),
                // A new key is a new app to clients: the old key's connections close.
                Some(before) if before.key != app.key => change.removed.push(app.id.clone()),
                // Unchanged: the version in use stays (nothing to allocate, nothing to report).
                Some(before)
                    if before.settings == app.settings
                        && before.previous_secret == app.previous_secret =>
                {
                    next.by_key.insert(before.key.to_string(), before.clone());
                    next.by_id.insert(before.id.to_string(), before.clone());
                    continue;
                }
                Some(before) => {
                    app.lifecycle = before.lifecycle.clone();
                    if before.enabled && !app.enabled {
                        change.disabled.push(app.id.clone());
                    } else {
                        change.changed.push(app.id.clone());
                        if app.enabled && !before.enabled {
                            enabled.push(app.id.clone());
                        }
                    }
                }
            }
            let app = Arc::new(app);
            next.by_key.insert(app.key.to_string(), app.clone());
            next.by_id.insert(app.id.to_string(), app);
        }
        for id in old.by_id.keys() {
            if !next.by_id.contains_key(id) {
                change
                    .removed
                    .extend(old.by_id.get(id).map(|a| a.id.clone()));
            }
        }
        self.current.store(Arc::new(next));
        self.ready.store(true, Ordering::SeqCst);
        // After the swap: a connection that then finds its app unmarked was registered
        // before this mark, so the caller's walk of the registry sees it.
        for (ids, why) in [
            (&change.disabled, Retired::Disabled),
            (&change.removed, Retired::Removed),
            (&enabled, Retired::No),
        ] {
            for id in ids {
                if let Some(app) = old.by_id.get(id.as_str()) {
                    app.retire(why);
                }
            }
        }
        if !change.is_empty() {
            self.changes.send_modify(|n| *n += 1);
        }
        change
    }
}

impl AppRegistry for LiveApps {
    fn by_key(&self, key: &str) -> Option<Arc<App>> {
        self.current.load().by_key.get(key).cloned()
    }

    fn by_id(&self, id: &str) -> Option<Arc<App>> {
        self.current.load().by_id.get(id).cloned()
    }

    fn all(&self) -> Vec<Arc<App>> {
        self.current.load().by_id.values().cloned().collect()
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use warren_protocol::AppKey;

    use super::*;
    use crate::app::PreviousSecret;
    use crate::config::AppConfig;

    fn app(id: &str, key: &str, secret: &str) -> AppConfig {
        let id = AppId::parse(id).unwrap();
        AppConfig::new(id, AppKey::parse(key).unwrap(), secret)
    }

    fn build(configs: &[AppConfig]) -> Vec<App> {
        configs.iter().map(App::from_config).collect()
    }

    #[test]
    fn an_empty_registry_is_ready_after_its_first_load() {
        let live = LiveApps::empty();
        assert!(!live.is_ready());
        live.replace(Vec::new());
        assert!(live.is_ready());
    }

    #[test]
    fn a_replacement_reports_and_retires_what_changed() {
        let (a, b, c) = (
            app("a", "ka", "s"),
            app("b", "kb", "s"),
            app("c", "kc", "s"),
        );
        let live = LiveApps::new(build(&[a.clone(), b.clone(), c.clone()]));
        let (old_a, old_b, old_c) = (
            live.by_id("a").unwrap(),
            live.by_id("b").unwrap(),
            live.by_id("c").unwrap(),
        );
        // An unchanged replacement first: the marks reach versions older than the current one.
        assert!(live
            .replace(build(&[a.clone(), b.clone(), c.clone()]))
            .is_empty());
        let slot = old_a.try_connect().unwrap();
        let mut a2 = a.clone();
        a2.max_connections = 1;
        let mut b2 = b.clone();
        b2.enabled = false;
        let d = app("d", "kd", "s");
        let change = live.replace(build(&[a2, b2, d]));
        assert_eq!(change.added, [AppId::parse("d").unwrap()]);
        assert_eq!(change.changed, [AppId::parse("a").unwrap()]);
        assert_eq!(change.disabled, [AppId::parse("b").unwrap()]);
        assert_eq!(change.removed, [AppId::parse("c").unwrap()]);
        assert_eq!(old_a.retired(), Retired::No);
        assert_eq!(old_b.retired(), Retired::Disabled);
        assert_eq!(old_c.retired(), Retired::Removed);
        assert!(live.by_key("kc").is_none());
        // The count carried over: the new version is at its quota of one.
        let new_a = live.by_id("a").unwrap();
        assert_eq!(new_a.connection_count(), 1);
        assert!(new_a.try_connect().is_none());
        drop(slot);
        assert!(new_a.try_connect().is_some());
        // Enabled again: unmarked, so its new connections stay.
        live.replace(build(&[a.clone(), b.clone()]));
        assert_eq!(old_b.retired(), Retired::No);
    }

    #[test]
    fn kept_apps_stay_as_they_were() {
        let live = LiveApps::new(build(&[app("a", "ka", "s"), app("b", "kb", "s")]));
        let old = live.by_id("a").unwrap();
        let change = live.replace_keeping(build(&[app("b", "kb", "s2")]), &["a".into()]);
        assert!(change.removed.is_empty());
        assert!(Arc::ptr_eq(&old, &live.by_id("a").unwrap()));
        assert_eq!(old.retired(), Retired::No);
    }

    #[test]
    fn a_new_key_retires_the_old_one() {
        let live = LiveApps::new(build(&[app("a", "ka", "s")]));
        let old = live.by_id("a").unwrap();
        let change = live.replace(build(&[app("a", "ka2", "s")]));
        assert_eq!(change.removed, [AppId::parse("a").unwrap()]);
        assert_eq!(old.retired(), Retired::Removed);
        assert!(live.by_key("ka").is_none());
        assert!(live.by_key("ka2").is_some());
    }

    #[test]
    fn the_previous_secret_counts_during_its_grace_only() {
        let c = app("a", "ka", "new");
        let later = SystemTime::now() + Duration::from_secs(60);
        let earlier = SystemTime::now() - Duration::from_secs(1);
        let graced = App::from_config(&c).with_previous_secret(Some(PreviousSecret {
            secret: "old".into(),
            until: later,
        }));
        assert_eq!(graced.secrets().collect::<Vec<_>>(), ["new", "old"]);
        let over = App::from_config(&c).with_previous_secret(Some(PreviousSecret {
            secret: "old".into(),
            until: earlier,
        }));
        assert_eq!(over.secrets().collect::<Vec<_>>(), ["new"]);
        let check = |s: &str| {
            if s == "old" {
                Ok(())
            } else {
                Err(s.to_owned())
            }
        };
        assert_eq!(graced.verify_with(check), Ok(()));
        assert_eq!(over.verify_with(check), Err("new".to_owned()));
    }
}
