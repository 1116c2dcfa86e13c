//! Environment overrides: `WARREN_<SECTION>__<KEY>=value` laid over the file's document.
//!
//! After `WARREN_` (any case) the name is split at `__` and lower-cased into a path. A number
//! indexes an array and the next free index appends an entry: `WARREN_APPS__0__SECRET` sets
//! `apps[0].secret` (the demo app's when the file has no `[[apps]]`), `WARREN_APPS__1__ID`
//! starts a second app. Variables apply in path order, lower indexes first; a name without
//! `__` after the prefix (`WARREN_LOG`) is not configuration.
//!
//! A value takes the type of the key's default (a number or a boolean where the default is
//! one, text elsewhere: `WARREN_APPS__0__ID=123456` stays text); one that does not parse stays
//! text for the key's type to refuse. In `WARREN_CLUSTER__REDIS_URL` a comma followed by
//! another URL (`scheme://`) or by nothing separates a list, so the host list of
//! `redis+sentinel://h1:26379,h2:26379/mymaster` stays one URL.
//!
//! Not figment's `Env` provider, because figment merges an array as a whole while an index
//! here changes one entry of the file's. So the overlay starts from the file's document, whose
//! values keep their tags (figment tags only untagged values); the values set here are new,
//! tagged as from the environment, and the interpolater names the variable behind a key.

use std::sync::Arc;

use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use super::error::{display_key, type_name};
use super::{Config, ConfigError, Origin, ENV_PREFIX};

/// The name of this provider's metadata.
pub(super) const SOURCE: &str = "environment variable";

pub(super) struct Overlay {
    doc: Dict,
    /// The variable that set or created each path (`apps.1`), in the order applied.
    origins: Arc<Vec<(String, String)>>,
}

impl Overlay {
    pub(super) fn new(
        base: &Figment,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut vars = Vec::new();
        for (name, value) in env {
            let prefixed = name.get(..ENV_PREFIX.len());
            let Some(rest) = prefixed
                .filter(|head| head.eq_ignore_ascii_case(ENV_PREFIX))
                .map(|_| &name[ENV_PREFIX.len()..])
                .filter(|rest| rest.contains("__"))
            else {
                continue;
            };
            let levels: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
            if levels.iter().any(String::is_empty) {
                let message = "empty level in the name (levels are separated by exactly two \
                               underscores, e.g. WARREN_SERVER__PORT)";
                return Err(refused(&name, message.into()));
            }
            vars.push((name, levels, value));
        }
        // Path order with indexes compared as numbers, so apps[1] exists before apps[2].
        vars.sort_by_cached_key(|(name, levels, _)| {
            let key: Vec<_> = levels.iter().map(|l| (index(l), l.clone())).collect();
            (key, name.clone())
        });
        let hints = Value::serialize(Config::default()).ok();
        let mut root = base.find_value("").unwrap_or_else(|_| Dict::new().into());
        let mut origins = Vec::new();
        for (name, levels, value) in &vars {
            let mut node = &mut root;
            let mut path = String::new();
            for (depth, level) in levels.iter().enumerate() {
                let (child, key, created) =
                    step(node, level, &path).map_err(|m| refused(name, m))?;
                path = if path.is_empty() {
                    key
                } else {
                    format!("{path}.{key}")
                };
                if created || depth + 1 == levels.len() {
                    *child = match levels.get(depth + 1) {
                        None => typed(&path, value, hints.as_ref()),
                        Some(next) if index(next).is_some() => Vec::<Value>::new().into(),
                        Some(_) => Dict::new().into(),
                    };
                    origins.push((path.clone(), name.clone()));
                }
                node = child;
            }
        }
        let doc = root.into_dict().unwrap_or_default();
        let origins = Arc::new(origins);
        Ok(Overlay { doc, origins })
    }
}

/// The entry `level` of `node` (at `path`), its key in paths (an index as a plain number),
/// and whether it had to be created.
fn step<'v>(
    node: &'v mut Value,
    level: &str,
    path: &str,
) -> Result<(&'v mut Value, String, bool), String> {
    let shown = display_key(path);
    match node {
        Value::Dict(_, dict) => {
            let created = !dict.contains_key(level);
            let child = dict.entry(level.to_owned()).or_insert(false.into());
            Ok((child, level.to_owned(), created))
        }
        Value::Array(_, items) => {
            let len = items.len();
            match index(level) {
                None => Err(format!(
                    "{shown} is an array, so `{level}` must be a numeric index"
                )),
                Some(i) if i > len => Err(format!(
                    "index {i} is out of range: {shown} has {len} entries (use index {len} to \
                     append one)"
                )),
                Some(i) => {
                    if i == len {
                        items.push(false.into());
                    }
                    Ok((&mut items[i], i.to_string(), i == len))
                }
            }
        }
        other => Err(format!(
            "{shown} is not a table (found {}), so it has no key `{level}`",
            type_name(&other.to_actual())
        )),
    }
}

/// The variable's text as the value at `path`, typed after the default found there.
fn typed(path: &str, raw: &str, hints: Option<&Value>) -> Value {
    if path == "cluster.redis_url" && split_url_list(raw).len() > 1 {
        return split_url_list(raw).into();
    }
    let mut hint = hints;
    for segment in path.split('.') {
        hint = match hint {
            Some(Value::Dict(_, dict)) => dict.get(segment),
            // Every entry has the type of the first default one.
            Some(Value::Array(_, items)) => items.first(),
            _ => None,
        };
    }
    let value = match hint {
        Some(Value::Num(..)) => (raw.parse::<i64>().map(Value::from).ok())
            .or_else(|| raw.parse::<u64>().map(Value::from).ok())
            .or_else(|| raw.parse::<f64>().map(Value::from).ok()),
        Some(Value::Bool(..)) => raw.parse::<bool>().map(Value::from).ok(),
        _ => None,
    };
    value.unwrap_or_else(|| raw.into())
}

/// Splits a comma-separated list of URLs, trimming blanks around entries. A comma starts an
/// entry when what follows contains `://` or is blank (an empty entry, refused later); other
/// commas stay in the URL, as in a Sentinel host list or a password.
pub(super) fn split_url_list(raw: &str) -> Vec<String> {
    let mut urls: Vec<String> = Vec::new();
    for piece in raw.split(',') {
        let starts_entry = piece.trim().is_empty() || piece.contains("://");
        match urls.last_mut() {
            Some(last) if !starts_entry && !last.trim().is_empty() => {
                last.push(',');
                last.push_str(piece);
            }
            _ => urls.push(piece.to_owned()),
        }
    }
    urls.iter().map(|url| url.trim().to_owned()).collect()
}

fn index(level: &str) -> Option<usize> {
    level
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| level.parse().ok())?
}

fn refused(var: &str, message: String) -> ConfigError {
    let origin = Origin::Env(var.to_owned());
    ConfigError::Invalid {
        origin,
        key: None,
        message,
    }
}

impl Provider for Overlay {
    fn metadata(&self) -> Metadata {
        let origins = Arc::clone(&self.origins);
        Metadata::named(SOURCE).interpolater(move |_: &Profile, keys: &[&str]| {
            let key = keys.join(".");
            let within = |path: &&(String, String)| {
                let rest = key.strip_prefix(path.0.as_str());
                rest.is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
            };
            // The deepest path wins; among equals the last applied, whose value stands.
            let var = origins
                .iter()
                .filter(within)
                .max_by_key(|(path, _)| path.len());
            let guess = || format!("{ENV_PREFIX}{}", keys.join("__").to_uppercase());
            var.map_or_else(guess, |(_, var)| var.clone())
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.doc.clone()))
    }
}
