//! What `-V` and `-D` print, the diagnostics lines every run logs, and how a failure is
//! described (one line, or the whole chain of causes with `-s`).

use std::error::Error;
use std::ffi::CStr;
use std::fmt::Write as _;

/// Name of the program as users call it.
pub const PROGRAM: &str = "cback3-amazons3-sync";

/// One line: program, implementation and version.
pub fn version_line() -> String {
    format!("{PROGRAM} (cback3-s3sync) {}", crate::VERSION)
}

/// The block `-V` prints to stdout (blank line, indented lines, blank line, like the
/// Cedar Backup tools).
pub fn version_text() -> String {
    format!(
        "\n {}\n Mirrors a directory into Amazon S3 and checks the copy; a drop-in\n \
         replacement for the Cedar Backup 3 tool of the same name.\n\n \
         Licensed under the GNU General Public License, version 2 or later.\n \
         It comes with NO warranty.\n\n \
         Run it with --help for the list of switches.\n\n",
        version_line()
    )
}

fn c_text(p: &[libc::c_char]) -> String {
    // SAFETY: utsname fields are NUL-terminated within their arrays.
    unsafe { CStr::from_ptr(p.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

fn platform() -> String {
    // SAFETY: uname fills a struct we own.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return std::env::consts::OS.to_string();
    }
    format!(
        "{} ({} {} {})",
        std::env::consts::OS,
        c_text(&u.sysname),
        c_text(&u.release),
        c_text(&u.machine)
    )
}

/// The locale from the environment (`LC_ALL`, then `LC_CTYPE`, then `LANG`), without its
/// codeset and modifier; `C` when none is set.
fn locale() -> String {
    let raw = ["LC_ALL", "LC_CTYPE", "LANG"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|v| !v.is_empty())
        .unwrap_or_else(|| "C".into());
    let name = raw.split(['.', '@']).next().unwrap_or("");
    if name.is_empty() {
        "C".into()
    } else {
        name.into()
    }
}

/// `strftime` of the current time, in UTC or local time.
pub(crate) fn format_now(fmt: &CStr, utc: bool) -> String {
    // SAFETY: gmtime_r/localtime_r and strftime write only into buffers we own.
    unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if utc {
            libc::gmtime_r(&now, &mut tm);
        } else {
            libc::localtime_r(&now, &mut tm);
        }
        let mut buf = [0u8; 128];
        let n = libc::strftime(buf.as_mut_ptr().cast(), buf.len(), fmt.as_ptr(), &tm);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

/// The diagnostics as (title, value), unsorted.
pub fn values() -> Vec<(&'static str, String)> {
    vec![
        ("version", format!("cback3-s3sync {}", crate::VERSION)),
        (
            "interpreter",
            format!(
                "none: native Rust code (edition 2021, rust-version {})",
                env!("CARGO_PKG_RUST_VERSION")
            ),
        ),
        ("platform", platform()),
        // Names are read as bytes and must be UTF-8 to become keys: no guessing.
        ("encoding", "utf-8".into()),
        ("locale", locale()),
        ("timestamp", format_now(c"%a %b %e %H:%M:%S %Y UTC", true)),
    ]
}

/// Sorted `Title....: value` lines, titles padded with dots to a common width.
pub fn lines() -> Vec<String> {
    format_lines(values())
}

fn format_lines<K: AsRef<str>>(mut items: Vec<(K, String)>) -> Vec<String> {
    // By title as shown (first letter capitalised), so a front end's `Installed` sorts in.
    items.sort_by_key(|(k, _)| k.as_ref().to_lowercase());
    let width = items
        .iter()
        .map(|(k, _)| k.as_ref().len())
        .max()
        .unwrap_or(0)
        + 3;
    items
        .into_iter()
        .map(|(k, v)| {
            let k = k.as_ref();
            let mut title = k[..1].to_uppercase() + &k[1..];
            while title.len() < width {
                title.push('.');
            }
            format!("{title}: {v}")
        })
        .collect()
}

/// The block `-D` prints to stdout.
pub fn diagnostics_text() -> String {
    diagnostics_block(&[])
}

/// The diagnostics block with `extra` `(title, value)` lines a front end adds among them
/// (the Python command's check of which program its command name runs).
fn diagnostics_block(extra: &[(String, String)]) -> String {
    let items: Vec<(String, String)> = values()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .chain(extra.iter().cloned())
        .collect();
    let mut s = String::from("\nDiagnostics:\n\n");
    for l in format_lines(items) {
        let _ = writeln!(s, "   {l}");
    }
    s.push('\n');
    s
}

/// The block `-D` prints after the diagnostics: the configuration a run would use (see
/// `s3::effective_configuration`), from the environment, the AWS profile and the command
/// line's `--maxConcurrency` and `--maxBandwidth`.
pub fn configuration_text(max_concurrency: Option<usize>, max_bandwidth: Option<u64>) -> String {
    let mut items = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(crate::s3::effective_configuration(
            max_concurrency,
            max_bandwidth,
        )),
        Err(e) => vec![("error", format!("cannot start the async runtime: {e}"))],
    };
    items.push(("lock directory", crate::lock::lock_dirs_shown()));
    let mut s = String::from("Effective configuration (secrets never shown):\n\n");
    for l in format_lines(items) {
        let _ = writeln!(s, "   {l}");
    }
    s.push('\n');
    s
}

/// Everything `-D` prints to stdout, for both front ends: the diagnostics (with `extra`
/// lines, see [`diagnostics_block`]) and the configuration a run with `opts` would use.
pub fn report(opts: &crate::options::Options, extra: &[(String, String)]) -> String {
    diagnostics_block(extra) + &configuration_text(opts.max_concurrency, opts.max_bandwidth)
}

/// Every cause of an error, outermost first, one per line after the first.
pub fn error_chain(e: &dyn Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let _ = write!(s, "\n  caused by: {c}");
        cause = c.source();
    }
    s
}

/// How a failure is reported: its one-line message, or with `-s` the whole chain of causes.
pub fn describe(e: &dyn Error, full: bool) -> String {
    if full {
        error_chain(e)
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_sorted_and_aligned() {
        let l = lines();
        let titles: Vec<&str> = l.iter().map(|x| x.split('.').next().unwrap()).collect();
        assert_eq!(
            titles,
            [
                "Encoding",
                "Interpreter",
                "Locale",
                "Platform",
                "Timestamp",
                "Version"
            ]
        );
        for x in &l {
            assert_eq!(x.find(": "), Some(14), "{x}");
        }
        assert!(l[4].ends_with(" UTC"), "{}", l[4]);
    }

    #[test]
    fn chain_lists_every_cause() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("outer")
            }
        }
        impl Error for Outer {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(error_chain(&e), "outer\n  caused by: inner");
        assert_eq!(describe(&e, false), "outer");
        assert_eq!(describe(&e, true), error_chain(&e));
    }
}
