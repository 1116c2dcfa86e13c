//! Loading: the file, then each `WARREN_*__*` variable, as figment layers.
//!
//! Each variable is a layer of its own, laid over what is already there, so the values it
//! sets carry its name: a refused value is reported with the file or the variable it came
//! from, found from the value itself. The variables are applied to the document by hand
//! rather than by figment's `Env`, because an array index (`WARREN_APPS__1__ID`) must change or
//! add one entry of the file's array, where figment would replace the whole array.

use std::fmt::Display;
use std::path::Path;

use figment::error::Kind;
use figment::value::{Dict, Map, Tag, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};

use super::{AppConfig, Config, DEMO_APP_ID, DEMO_APP_KEY, DEMO_APP_SECRET};

/// Why a configuration was refused, in one line naming the key and where its value came from.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ConfigError {
    /// `origin` is the file or the variable; it and `key` are left out when empty.
    pub(super) fn invalid(origin: &str, key: &str, what: impl Display) -> Self {
        let mut line = String::from("invalid configuration: ");
        for part in [origin, key].into_iter().filter(|part| !part.is_empty()) {
            line = line + part + ": ";
        }
        ConfigError(format!("{line}{what}"))
    }
}

impl Config {
    /// Reads the file (`None`: only the defaults), lays the `WARREN_*__*` variables of `env`
    /// (usually `std::env::vars()`) over it, and validates.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let Some(path) = path else {
            return Config::parse("", Source::Custom(String::new()), env);
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
        Config::parse(&text, Source::File(path.to_path_buf()), env)
    }

    /// As [`Config::load`], from TOML text that came from `file` (`Source::Custom("")`: none).
    pub(crate) fn parse(
        text: &str,
        file: Source,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let shown = file.to_string();
        let mut doc: Dict = toml::from_str(text).map_err(|e: toml::de::Error| {
            // The first line of toml's message gives the position; the rest is a drawing.
            let position = e.to_string().lines().next().unwrap_or_default().to_owned();
            let what = e.message().lines().collect::<Vec<_>>().join("; ");
            ConfigError::invalid(&shown, "", format!("{position}: {what}"))
        })?;
        // In place before the variables, so that `WARREN_APPS__0__SECRET` changes it.
        let demo = [
            ("id", DEMO_APP_ID),
            ("key", DEMO_APP_KEY),
            ("secret", DEMO_APP_SECRET),
        ];
        let demo = Map::from(demo.map(|(key, value)| (key.to_owned(), Value::from(value))));
        doc.entry("apps".into()).or_insert(vec![demo].into());
        let mut figment = Figment::from(Layer(doc, file));
        for (path, name, value) in variables(env) {
            let mut root = figment.find_value("").unwrap_or(Value::from(Dict::new()));
            set(&mut root, &path, value).map_err(|what| ConfigError::invalid(&name, "", what))?;
            let doc = root.into_dict().unwrap_or_default();
            figment = figment.merge(Layer(doc, Source::Custom(name)));
        }
        let refuse =
            |key: &str, what: &dyn Display| ConfigError::invalid(&origin(&figment, key), key, what);
        // Lossy: a variable's text is a number or a boolean where the key is one.
        let config: Config = figment.extract_lossy().map_err(|e| {
            let mut key = e.path.join(".");
            if let Kind::MissingField(field) = &e.kind {
                key = format!("{key}.{field}");
            }
            refuse(&key, &e.kind)
        })?;
        config.check().map_err(|(key, what)| refuse(&key, &what))?;
        Ok(config)
    }
}

impl AppConfig {
    /// One app from a JSON object whose fields are the keys of an `[[apps]]` section (a
    /// database row), held to the same rules as the file's: the error names the field.
    /// `null` fields take their default.
    pub fn from_json(value: serde_json::Value) -> Result<AppConfig, (String, String)> {
        let serde_json::Value::Object(mut fields) = value else {
            return Err((String::new(), "is not a JSON object".into()));
        };
        fields.retain(|_, v| !v.is_null());
        let doc: Dict = serde_json::from_value(serde_json::Value::Object(fields))
            .map_err(|e| (String::new(), e.to_string()))?;
        let figment = Figment::from(Layer(doc, Source::Custom(String::new())));
        let app: AppConfig = figment.extract().map_err(|e| {
            let mut key = e.path.join(".");
            if let Kind::MissingField(field) = &e.kind {
                key = if key.is_empty() {
                    field.to_string()
                } else {
                    format!("{key}.{field}")
                };
            }
            (key, e.kind.to_string())
        })?;
        app.check("")?;
        Ok(app)
    }
}

/// The configuration variables of `env`: their path (lower-cased levels of the name after
/// `WARREN_`, split at `__`), name and value, in path order with indexes compared as numbers,
/// so that `apps.1` exists before `apps.2` is set. `WARREN_LOG` (no `__`) is not one.
fn variables(
    env: impl IntoIterator<Item = (String, String)>,
) -> Vec<(Vec<String>, String, String)> {
    let mut vars: Vec<_> = env
        .into_iter()
        .filter_map(|(name, value)| {
            let prefixed = name.get(..7)?.eq_ignore_ascii_case("WARREN_");
            let rest = name.get(7..).filter(|_| prefixed)?;
            let path = rest.split("__").map(str::to_lowercase).collect::<Vec<_>>();
            (path.len() > 1).then_some((path, name, value))
        })
        .collect();
    vars.sort_by_cached_key(|(path, name, _)| {
        let levels: Vec<_> = path
            .iter()
            .map(|l| (l.parse::<usize>().ok(), l.clone()))
            .collect();
        (levels, name.clone())
    });
    vars
}

/// Sets the text `value` at `path` under `node`, creating tables on the way; an index may
/// name an entry of an array or the next one, which it adds.
fn set(node: &mut Value, path: &[String], value: String) -> Result<(), String> {
    let Some((level, rest)) = path.split_first() else {
        *node = value.into();
        return Ok(());
    };
    let child = match node {
        // A new level followed by an index is an array (`APPS__0__WEBHOOKS__0__URL`).
        Value::Dict(_, dict) => dict.entry(level.clone()).or_insert_with(|| {
            match rest.first().map(|next| next.parse::<usize>()) {
                Some(Ok(_)) => Vec::<Value>::new().into(),
                _ => Dict::new().into(),
            }
        }),
        Value::Array(_, items) => {
            let len = items.len();
            match level.parse::<usize>() {
                Ok(i) if i == len => {
                    items.push(Dict::new().into());
                    &mut items[i]
                }
                Ok(i) if i < len => &mut items[i],
                _ => return Err(format!("`{level}` is not an index from 0 to {len}")),
            }
        }
        _ => return Err(format!("`{level}` is below a value that is not a table")),
    };
    set(child, rest, value)
}

/// Where the value at `path` (or its deepest parent present) came from: the file or the
/// variable, or "" when it is a default or the text is not a file.
fn origin(figment: &Figment, key: &str) -> String {
    let root = figment.find_value("").ok();
    let (mut node, mut tag) = (root.as_ref(), Tag::Default);
    for level in key.split('.') {
        let Some(found) = node else { break };
        tag = found.tag();
        node = match found {
            Value::Dict(_, dict) => dict.get(level),
            Value::Array(_, items) => level.parse().ok().and_then(|i: usize| items.get(i)),
            _ => None,
        };
    }
    let tag = node.map_or(tag, Value::tag);
    let source = figment.get_metadata(tag).and_then(|m| m.source.as_ref());
    source.map(ToString::to_string).unwrap_or_default()
}

/// Values from one file or variable.
struct Layer(Dict, Source);

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::from("Warren configuration", self.1.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.0.clone()))
    }
}
