//! `--summaryFile FILE`: the run's summary as JSON, for monitoring.
//!
//! Written at the end of every run that got past option parsing (also when logging could not
//! be set up, or the run failed or was interrupted), atomically: a temporary file in the same
//! directory, then a rename, so a reader never sees half a file. The format is described by
//! `schema/summary.schema.json` (which a test validates real output against); `"format": 1`
//! changes only when a field changes meaning or disappears.

use std::io::Write;
use std::path::Path;

use crate::report::{ExitStatus, Summary};

/// Version of the file's format.
pub const FORMAT: u32 = 1;

/// A JSON string literal.
fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn status_name(s: ExitStatus) -> &'static str {
    match s {
        ExitStatus::Success => "success",
        ExitStatus::Usage => "usage",
        ExitStatus::Logging => "logging",
        ExitStatus::Interrupted => "interrupted",
        ExitStatus::Failure => "failure",
    }
}

/// The summary as a JSON document (one object, keys in a fixed order, ending in a newline).
pub fn render(s: &Summary, status: ExitStatus, dry_run: bool, finished_unix: u64) -> String {
    let phases: Vec<String> = s
        .phases
        .iter()
        .map(|(name, d)| format!("{}: {:.6}", string(name), d.as_secs_f64()))
        .collect();
    let failures: Vec<String> = s
        .failures
        .iter()
        .map(|(path, why)| {
            format!(
                "\n    {{\"path\": {}, \"reason\": {}}}",
                string(path),
                string(why)
            )
        })
        .collect();
    let error = s.error.as_deref().map_or("null".into(), string);
    let restore = s.restore.as_ref().map_or("null".into(), |r| {
        format!(
            "{{\"objects\": {}, \"restored\": {}, \"restored_bytes\": {}, \"unchanged\": {}, \"checksum_verified\": {}, \"size_only\": {}, \"refused\": {}, \"archived\": {}, \"conflicts\": {}, \"failed\": {}, \"not_attempted\": {}, \"directory_markers\": {}, \"directories_restored\": {}, \"directories_defaulted\": {}, \"files_defaulted\": {}, \"metadata_warnings\": {}, \"verified\": {}, \"missing\": {}}}",
            r.objects, r.restored, r.restored_bytes, r.unchanged, r.checksum_verified, r.size_only, r.refused, r.archived, r.conflicts, r.failed, r.not_attempted, r.directory_markers, r.directories_restored, r.directories_defaulted, r.files_defaulted, r.metadata_warnings, r.verified, r.missing
        )
    });
    format!(
        r#"{{
  "format": {FORMAT},
  "tool": "cback3-amazons3-sync",
  "version": {version},
  "finished_unix": {finished_unix},
  "exit_status": {code},
  "status": {status},
  "dry_run": {dry_run},
  "error": {error},
  "elapsed_seconds": {elapsed:.6},
  "phases_seconds": {{{phases}}},
  "local": {{"files": {lf}, "bytes": {lb}, "skipped": {sk}, "name_problems": {np}}},
  "planned": {{"uploads": {pu}, "upload_bytes": {pb}, "deletes": {pd}}},
  "uploaded": {{"files": {uf}, "bytes": {ub}}},
  "unchanged": {un},
  "deleted": {de},
  "directories": {{"local": {dl}, "markers_put": {mp}, "markers_deleted": {md}}},
  "failed": {fa},
  "verify": {{"verified": {ve}, "errors": {vr}, "extra_objects": {ex}, "content_verified": {cv}, "content_unverifiable": {cu}}},
  "restore": {restore},
  "failures": [{failures}{close}]
}}
"#,
        version = string(crate::VERSION),
        code = status.code(),
        status = string(status_name(status)),
        elapsed = s.elapsed.as_secs_f64(),
        phases = phases.join(", "),
        lf = s.local_files,
        lb = s.local_bytes,
        sk = s.skipped,
        np = s.name_problems,
        pu = s.planned_uploads,
        pb = s.planned_upload_bytes,
        pd = s.planned_deletes,
        uf = s.uploaded,
        ub = s.uploaded_bytes,
        un = s.unchanged,
        de = s.deleted,
        dl = s.local_dirs,
        mp = s.markers_put,
        md = s.markers_deleted,
        fa = s.failed,
        ve = s.verified,
        vr = s.verify_errors,
        ex = s.extra_objects,
        cv = s.content_verified,
        cu = s.content_unverifiable,
        failures = failures.join(","),
        close = if failures.is_empty() { "" } else { "\n  " },
    )
}

/// Writes `text` to `path` atomically (temporary file beside it, fsync, rename).
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the summary file path names no file"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes the summary file; on failure logs an ERROR and returns the status the run should
/// end with instead (monitoring would otherwise read a stale file as this run's).
pub fn write(path: &Path, s: &Summary, status: ExitStatus, dry_run: bool) -> ExitStatus {
    let finished = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match write_atomically(path, &render(s, status, dry_run, finished)) {
        Ok(()) => status,
        Err(e) => {
            log::error!(target: crate::FLOW, "Cannot write the summary file {}: {e}", crate::display::display_path(path));
            if status == ExitStatus::Success {
                ExitStatus::Failure
            } else {
                status
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        assert_eq!(string("a\"b\\c\nd\u{1}é"), "\"a\\\"b\\\\c\\nd\\u0001é\"");
    }

    #[test]
    fn written_atomically_over_an_old_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.json");
        std::fs::write(&p, "old").unwrap();
        let mut s = Summary::default();
        s.failures.push(("a \"b\"".into(), "why".into()));
        let text = render(&s, ExitStatus::Failure, false, 1);
        write_atomically(&p, &text).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), text);
        assert!(text.contains(r#"{"path": "a \"b\"", "reason": "why"}"#));
        // Nothing else is left in the directory.
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
