//! Why a configuration was refused, as one line: where the value came from, the key, and
//! what is wrong.

use std::fmt;
use std::path::PathBuf;

use figment::error::{Actual, Kind, OneOf};
use figment::value::Value;
use figment::{Figment, Profile};

/// Why a configuration could not be loaded. `Display` is one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {}", .path.display(), io_message(.error))]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A value, a key or the file itself is refused.
    #[error("invalid configuration: {origin}{}{message}", key_prefix(.key))]
    Invalid {
        origin: Origin,
        /// The key (`apps[0].secret`), when the message does not name it.
        key: Option<String>,
        message: String,
    },
}

/// Where a value came from; `Display` is the message's prefix (`warren.toml:3: `,
/// `WARREN_SERVER__PORT: `, or nothing).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Origin {
    /// A default, text that is not a file, or a configuration built in code.
    #[default]
    Unknown,
    /// The file, and the key's line when the file has the key.
    File { path: PathBuf, line: Option<usize> },
    /// The variable that set the value or created its table.
    Env(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Unknown => Ok(()),
            Origin::File { path, line: None } => write!(f, "{}: ", path.display()),
            Origin::File {
                path,
                line: Some(n),
            } => write!(f, "{}:{n}: ", path.display()),
            Origin::Env(var) => write!(f, "{var}: "),
        }
    }
}

impl Origin {
    /// The source of the value at `path` (`apps.1.key`), or of its deepest parent present:
    /// the tag of that value in `figment`.
    pub(super) fn of(figment: &Figment, text: &str, path: &str) -> Origin {
        let Ok(root) = figment.find_value("") else {
            return Origin::Unknown;
        };
        let (mut node, mut found) = (&root, Vec::new());
        for segment in path.split('.') {
            let next = match node {
                Value::Dict(_, dict) => dict.get(segment),
                Value::Array(_, items) => segment.parse().ok().and_then(|i: usize| items.get(i)),
                _ => None,
            };
            let Some(next) = next else { break };
            node = next;
            found.push(segment);
        }
        match figment.get_metadata(node.tag()) {
            Some(m) if m.name == super::env::SOURCE => {
                Origin::Env(m.interpolate(&Profile::Default, &found))
            }
            Some(m) => match m.source.as_ref().and_then(|source| source.file_path()) {
                Some(file) => Origin::File {
                    path: file.to_path_buf(),
                    line: super::source::line_of(text, &found),
                },
                None => Origin::Unknown,
            },
            None => Origin::Unknown,
        }
    }
}

/// A refused value whose origin is not known yet: its dotted path (`apps.0.secret`) and what
/// is wrong. `keyed` is false when the message names the key itself.
pub(super) struct Problem {
    path: String,
    message: String,
    keyed: bool,
}

impl Problem {
    pub(super) fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        let (path, message) = (path.into(), message.into());
        Problem {
            path,
            message,
            keyed: true,
        }
    }

    /// Figment's error in the words of a configuration file: keys, tables, arrays.
    pub(super) fn from_figment(error: figment::Error) -> Self {
        let path = error.path.join(".");
        let key = display_key(&path);
        let message = match error.kind {
            Kind::UnknownField(_, expected) => {
                let expected = expected.join(", ");
                let message = format!("unknown key `{key}` (expected one of {expected})");
                let keyed = false;
                return Problem {
                    path,
                    message,
                    keyed,
                };
            }
            Kind::MissingField(field) => {
                // Only an app has required keys.
                let message = "required key is missing (every app needs id, key and secret)";
                return Problem::at(format!("{path}.{field}"), message);
            }
            Kind::InvalidType(actual, expected) if expected.starts_with("struct ") => {
                let section = match error.path.len() {
                    1 => format!(" (a [{key}] section)"),
                    _ => String::new(),
                };
                format!("must be a table{section}, found {}", type_name(&actual))
            }
            Kind::InvalidType(actual, _) if path == "apps" => format!(
                "must be an array of tables (one [[apps]] section per app), found {}",
                type_name(&actual)
            ),
            Kind::InvalidType(actual, expected) => {
                format!("invalid type: {}, expected {expected}", shown(&actual))
            }
            Kind::InvalidValue(actual, expected) => {
                format!("invalid value: {}, expected {expected}", shown(&actual))
            }
            Kind::UnknownVariant(variant, expected) => {
                format!("unknown variant `{variant}`, expected {}", OneOf(expected))
            }
            kind => kind.to_string(),
        };
        Problem::at(path, message)
    }

    pub(super) fn into_error(self, origin: &dyn Fn(&str) -> Origin) -> ConfigError {
        ConfigError::Invalid {
            origin: origin(&self.path),
            key: self.keyed.then(|| display_key(&self.path)),
            message: self.message,
        }
    }
}

/// A dotted path as messages show it: `apps.0.secret` is `apps[0].secret`, and a key that is
/// not a bare TOML key is quoted.
pub(super) fn display_key(path: &str) -> String {
    let mut shown = String::new();
    for segment in path.split('.').filter(|s| !s.is_empty()) {
        let bare = segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        shown = match segment.parse::<usize>() {
            Ok(index) => format!("{shown}[{index}]"),
            Err(_) if shown.is_empty() && bare => segment.to_owned(),
            Err(_) if bare => format!("{shown}.{segment}"),
            Err(_) => format!(
                "{shown}{}{segment:?}",
                if shown.is_empty() { "" } else { "." }
            ),
        };
    }
    shown
}

/// A value as serde words it: integer `7`, string "x".
fn shown(actual: &Actual) -> String {
    match actual {
        Actual::Bool(b) => format!("boolean `{b}`"),
        Actual::Unsigned(n) => format!("integer `{n}`"),
        Actual::Signed(n) => format!("integer `{n}`"),
        Actual::Float(x) => format!("float `{x}`"),
        Actual::Str(s) => format!("string {s:?}"),
        other => type_name(other),
    }
}

/// The TOML name of a value's type.
pub(super) fn type_name(actual: &Actual) -> String {
    let name = match actual {
        Actual::Bool(_) => "boolean",
        Actual::Unsigned(_) | Actual::Signed(_) => "integer",
        Actual::Float(_) => "float",
        Actual::Char(_) | Actual::Str(_) => "string",
        Actual::Map => "table",
        Actual::Seq => "array",
        other => return other.to_string(),
    };
    name.to_owned()
}

fn key_prefix(key: &Option<String>) -> String {
    key.as_ref().map(|k| format!("{k}: ")).unwrap_or_default()
}

/// The I/O error's message without the trailing ` (os error N)`.
fn io_message(error: &std::io::Error) -> String {
    let message = error.to_string();
    match message.rfind(" (os error ") {
        Some(start) if message.ends_with(')') => message[..start].to_owned(),
        _ => message,
    }
}
