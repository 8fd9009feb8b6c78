//! Which program the command name `cback3-amazons3-sync` runs: this package's pip install
//! and Cedar Backup 3's both install that name, and the one installed last owns it. The
//! Python command's `-D` shows the answer (the binary is not installed by pip: it does not).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The command name both this package and Cedar Backup 3 install.
pub const COMMAND: &str = "cback3-amazons3-sync";
/// The command name only this package installs: the one to put in cron lines.
pub const OWN_COMMAND: &str = "cback3-s3sync";
/// How long a command may take to answer `-V`.
const VERSION_TIMEOUT: Duration = Duration::from_secs(60);

/// What the command at `path` is, by its `-V` output: a description, and `Some(true)` for
/// ours, `Some(false)` for Cedar Backup's original, `None` when neither.
pub fn implementation(path: &Path) -> (String, Option<bool>) {
    let child = Command::new(path)
        .arg("-V")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => return (format!("cannot run it ({e})"), None),
    };
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(VERSION_TIMEOUT) {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return (format!("cannot run it ({e})"), None),
        Err(_) => {
            // SAFETY: a plain kill of the child we started (still unreaped: its waiter runs).
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            return (
                format!("cannot run it (no answer to -V in {VERSION_TIMEOUT:?})"),
                None,
            );
        }
    };
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    if first.contains(OWN_COMMAND) {
        return (first.to_owned(), Some(true));
    }
    if text.contains("Cedar Backup Amazon S3 sync tool") {
        let release = text
            .split_once("Cedar Backup version ")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .map(|r| r.trim_end_matches('.'))
            .filter(|r| !r.is_empty())
            .unwrap_or("3");
        return (
            format!("Cedar Backup {release}'s original tool"),
            Some(false),
        );
    }
    let code = out
        .status
        .code()
        .map_or("a signal".into(), |c| c.to_string());
    let short: String = first.chars().take(80).collect();
    (format!("unknown (exit {code}: {short})"), None)
}

/// The first executable `COMMAND` on `search_path` (a `PATH`-style list), as `which` finds it.
fn which(search_path: &str) -> Option<PathBuf> {
    search_path
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(COMMAND))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Which implementation `COMMAND` is: `script` (where this package installed it) and the
/// first on `search_path`. Returns `(title, value)` diagnostics and at most one warning,
/// with the fix (`python`: the interpreter whose pip reinstalls this package).
pub fn check(
    script: &Path,
    search_path: &str,
    python: &str,
) -> (Vec<(String, String)>, Option<String>) {
    let here = script.display();
    let fix = format!("{python} -m pip install --force-reinstall --no-deps cback3-s3sync");
    let mut found = Vec::new();
    let mut warnings = Vec::new();
    if !script.exists() {
        found.push(("Installed".into(), format!("{here} is missing")));
        warnings.push(format!(
            "{here} is missing (uninstalling cedar-backup3 removes it); to fix it: {fix}"
        ));
    } else {
        let (what, ours) = implementation(script);
        found.push(("Installed".into(), format!("{here} runs {what}")));
        if ours == Some(false) {
            warnings.push(format!(
                "{here} runs Cedar Backup's original, not cback3-s3sync (both packages install \
                 {COMMAND}; the one installed last owns it); to fix it: {fix}"
            ));
        }
    }
    match which(search_path) {
        None => found.push(("OnPath".into(), format!("{COMMAND} is not on PATH"))),
        Some(on_path) if same_file(&on_path, script) => {
            found.push(("OnPath".into(), format!("{} (the same)", on_path.display())))
        }
        Some(on_path) => {
            let (what, ours) = implementation(&on_path);
            found.push((
                "OnPath".into(),
                format!("{} runs {what}", on_path.display()),
            ));
            if ours == Some(false) {
                let own = script.parent().unwrap_or(Path::new("")).join(OWN_COMMAND);
                warnings.push(format!(
                    "{COMMAND} on PATH ({}) runs Cedar Backup's original from another \
                     installation; call {} instead (see docs/install.md on switching a Cedar \
                     Backup install)",
                    on_path.display(),
                    own.display()
                ));
            }
        }
    }
    (found, warnings.into_iter().next())
}
