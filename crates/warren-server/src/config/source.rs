//! The TOML file as a figment provider, and the line a key is on.
//!
//! The text is parsed here rather than by figment's own TOML provider so that a syntax error
//! keeps its position and becomes one line. Values carry no position once in figment, so the
//! line of a refused key is found again in the text, only when there is an error to report.

use std::path::{Path, PathBuf};

use figment::value::{Dict, Map};
use figment::{Metadata, Profile, Provider};

use super::{ConfigError, Origin};

pub(super) struct TomlSource {
    doc: Dict,
    /// `None` for text that is not a file: errors then name no source.
    file: Option<PathBuf>,
}

impl TomlSource {
    pub(super) fn parse(text: &str, file: Option<&Path>) -> Result<Self, ConfigError> {
        let doc = toml::from_str(text).map_err(|error: toml::de::Error| {
            let position = error
                .span()
                .and_then(|span| text.get(..span.start))
                .map(|before| {
                    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count());
                    format!(" at line {}, column {}", line_count(before), column + 1)
                });
            ConfigError::Invalid {
                origin: file.map_or(Origin::Unknown, |path| Origin::File {
                    path: path.to_path_buf(),
                    line: None,
                }),
                key: None,
                message: format!(
                    "TOML syntax error{}: {}",
                    position.unwrap_or_default(),
                    single_line(error.message())
                ),
            }
        })?;
        let file = file.map(Path::to_path_buf);
        Ok(TomlSource { doc, file })
    }
}

impl Provider for TomlSource {
    fn metadata(&self) -> Metadata {
        let metadata = Metadata::named("TOML file");
        match &self.file {
            Some(path) => metadata.source(path.as_path()),
            None => metadata,
        }
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.doc.clone()))
    }
}

/// The line of the deepest key of `path` (`["apps", "1", "key"]`) that the text has.
pub(super) fn line_of(text: &str, path: &[&str]) -> Option<usize> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let mut item = doc.as_item();
    let mut span = item.span();
    for segment in path {
        let next = match segment.parse::<usize>() {
            Ok(index) if item.is_array() || item.is_array_of_tables() => item.get(index),
            _ => item.get(*segment),
        };
        let Some(next) = next else { break };
        item = next;
        span = item.span().or(span);
    }
    Some(line_count(text.get(..span?.start)?))
}

fn line_count(before: &str) -> usize {
    before.matches('\n').count() + 1
}

fn single_line(message: &str) -> String {
    let lines: Vec<&str> = message.lines().map(str::trim).collect();
    lines
        .into_iter()
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}
