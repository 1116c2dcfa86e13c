//! The module rules of ARCHITECTURE.md ("modules and who may use whom"), checked: each
//! top-level module of `src/` may name only the modules its row allows (`crate::<module>`),
//! outside its tests. A new dependency is a design decision: change the table there and here
//! together.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module -> the modules it may use. `server` composes everything and is left out.
const ALLOWED: &[(&str, &[&str])] = &[
    (
        "listener",
        &[
            "connection",
            "gate",
            "http_connection",
            "ws",
            "connection_errors",
            "tls",
            "transport",
        ],
    ),
    ("gate", &[]),
    ("http_connection", &["connection_errors", "transport"]),
    ("http", &["api", "node", "connections", "config"]),
    ("scrape", &["metrics", "node", "config"]),
    ("console", &["node", "monitor", "cluster", "app"]),
    ("ingress", &[]),
    ("api", &["node", "cluster", "app", "extend", "metrics"]),
    (
        "connection",
        &[
            "node",
            "connections",
            "cluster",
            "app",
            "gate",
            "outbox",
            "ws",
            "extend",
            "monitor",
            "connection_errors",
            "metrics",
            "transport",
        ],
    ),
    ("extend", &["node", "cluster", "app", "outbox", "ws"]),
    ("connections", &["outbox", "ws", "metrics", "app"]),
    (
        "node",
        &[
            "hub", "cluster", "outbox", "ws", "monitor", "webhooks", "metrics",
        ],
    ),
    ("monitor", &["config"]),
    ("webhooks", &["app", "cluster", "config"]),
    ("hub", &["outbox", "metrics"]),
    ("outbox", &["metrics"]),
    ("cluster", &["config"]),
    ("ws", &[]),
    ("app", &["config"]),
    ("reload", &["app", "connections", "config"]),
    ("apps_source", &["app", "config", "metrics", "reload"]),
    ("config", &[]),
    ("readiness", &["node", "app"]),
    ("connection_errors", &["config"]),
    ("metrics", &[]),
    ("transport", &["tls"]),
    ("tls", &["config"]),
];

#[test]
fn modules_use_only_what_their_layer_allows() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, file) in sources(&src) {
        let text = std::fs::read_to_string(&file).expect("readable source");
        for line in text.lines() {
            let line = line.trim_start();
            if line.starts_with("#[cfg(test)]") {
                break; // tests may reach further than the code they test
            }
            if line.starts_with("//") {
                continue;
            }
            for target in line.split("crate::").skip(1) {
                let name: String = target
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !name.is_empty() && name != module {
                    used.entry(module.clone()).or_default().insert(name);
                }
            }
        }
    }
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut broken = Vec::new();
    for (module, targets) in &used {
        if module == "server" || module == "lib" {
            continue;
        }
        let Some(ok) = allowed.get(module.as_str()) else {
            broken.push(format!("{module}: not in the table"));
            continue;
        };
        for t in targets {
            if !ok.contains(&t.as_str()) {
                broken.push(format!("{module} uses {t}"));
            }
        }
    }
    assert!(broken.is_empty(), "module rules broken: {broken:?}");
}

/// Every `.rs` file under `src`, with the top-level module it belongs to.
fn sources(src: &Path) -> Vec<(String, std::path::PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(src).expect("under src");
                let first = rel.components().next().expect("non-empty");
                let module = first
                    .as_os_str()
                    .to_string_lossy()
                    .trim_end_matches(".rs")
                    .to_owned();
                out.push((module, path));
            }
        }
    }
    out
}
