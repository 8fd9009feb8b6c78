//! How names appear in log lines and messages: local paths and S3 keys, with control
//! characters and bytes that are not UTF-8 escaped so that one name is always one line.

use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A path for a log line: valid UTF-8 kept, control characters and invalid bytes escaped,
/// so one name is always one line.
pub fn display_path(path: &Path) -> String {
    display_bytes(path.as_os_str().as_bytes())
}

pub fn display_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_escapes_controls_and_bad_bytes() {
        assert_eq!(display_bytes(b"a\nb\tc\xffd"), "a\\nb\\tc\\xffd");
        assert_eq!(display_bytes("é €".as_bytes()), "é €");
    }
}
