//! The configuration loader: any text gives a configuration or an error naming the problem,
//! and what loads also validates without a panic.

use warren_server::fuzz_internals::config_from_toml;

pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    // The first line, when it looks like one, is an environment variable laid over the file.
    let (env, file) = match text.split_once('\n') {
        Some((first, rest)) if first.starts_with("WARREN_") => match first.split_once('=') {
            Some((k, v)) => (vec![(k.to_owned(), v.to_owned())], rest),
            None => (Vec::new(), &text[..]),
        },
        _ => (Vec::new(), &text[..]),
    };
    match config_from_toml(file, env) {
        Ok(config) => {
            let _ = config.validate();
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}
