//! Sets `WARREN_COMMIT` for `warren --version`: the abbreviated commit the binary is built
//! from, "unknown" outside a git checkout or without git. A build from a source tarball or in
//! a container without `.git` can name it: `WARREN_COMMIT=abc1234 cargo build`.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=WARREN_COMMIT");
    let commit = match std::env::var("WARREN_COMMIT") {
        Ok(given) if !given.trim().is_empty() => given.trim().to_owned(),
        _ => {
            watch_head();
            git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into())
        }
    };
    println!("cargo:rustc-env=WARREN_COMMIT={commit}");
}

/// Runs git in this crate's directory; its trimmed output when it succeeded.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}

/// Asks Cargo to run this again when HEAD moves: a checkout (HEAD itself), a commit on the
/// branch (its ref, loose or packed; the reflog of HEAD too, which git appends to on every
/// move). `--git-path` finds them in a linked worktree too, where HEAD is in the worktree's own
/// directory and the refs are shared. Only paths that exist are named, since Cargo reruns on
/// every build for a missing one: a branch whose ref is packed only (a fresh clone) gets its
/// directory watched, where the first commit writes the loose ref.
fn watch_head() {
    let mut files = vec![
        "HEAD".to_owned(),
        "logs/HEAD".to_owned(),
        "packed-refs".to_owned(),
    ];
    files.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for file in files {
        // Relative to this crate's directory, as Cargo reads the paths it is given.
        let Some(path) = git(&["rev-parse", "--git-path", &file]) else {
            continue;
        };
        let path = Path::new(&path);
        let watched = if path.exists() {
            Some(path)
        } else {
            path.parent()
                .filter(|dir| file.starts_with("refs/") && dir.exists())
        };
        if let Some(watched) = watched {
            println!("cargo:rerun-if-changed={}", watched.display());
        }
    }
}
