//! The usage text (`-h`) and the texts the man page shares with it.

use super::switches::SWITCHES;

/// The usage text printed by `-h` (to stderr) and before a command-line error.
pub fn usage() -> String {
    let mut s = String::new();
    s += "\nUsage: cback3-amazons3-sync [switches] sourceDir s3BucketUrl\n\n";
    s += DESCRIPTION;
    s += "\n\nArguments:\n";
    for (name, what) in ARGUMENTS {
        s += &format!("  {name:<22}{what}\n");
    }
    s += "\nSwitches (";
    s += ABBREVIATIONS;
    s += "):\n";
    for sw in SWITCHES {
        let mut head = match sw.short {
            Some(c) => format!("  -{c}, --{}", sw.long),
            None => format!("      --{}", sw.long),
        };
        if let Some(v) = sw.value_name {
            head += &format!("={v}");
        }
        let mut lines = sw.help.lines();
        let first = lines.next().unwrap_or("");
        if head.len() < 24 {
            s += &format!("{head:<24}{first}\n");
        } else {
            s += &format!("{head}\n{:24}{first}\n", "");
        }
        for l in lines {
            s += &format!("{:24}{l}\n", "");
        }
    }
    s += "\nExit status: ";
    s += EXIT_STATUS;
    s += "\n\nExample:\n  ";
    s += EXAMPLE;
    s += "\n\n";
    s
}

/// What a bad command line prints to stderr (exit 2): the usage, then the error.
pub fn usage_error(e: &dyn std::fmt::Display) -> String {
    format!("{} *** Error: {e}\n", usage())
}

// Texts shared by the usage above and the man page (`manpage.rs`); lines as -h prints them.

/// What the tool does.
pub const DESCRIPTION: &str = "\
Copies the files under sourceDir into the S3 bucket prefix given by s3BucketUrl
(s3://bucket/prefix), deletes objects there that have no local file, then lists
the prefix again to prove that every file arrived with its size. A drop-in for
Cedar Backup 3's cback3-amazons3-sync that talks to S3 without the AWS CLI.";

/// The positional arguments and what they are.
pub const ARGUMENTS: &[(&str, &str)] = &[
    ("sourceDir", "existing local directory to copy"),
    ("s3BucketUrl", "target, s3://bucket/prefix"),
];

/// How switch names may be written.
pub const ABBREVIATIONS: &str = "\
long names of the Cedar Backup switches may be shortened to any
unique prefix, e.g. --verb; the switches without a short form must be
written in full";

/// The exit statuses.
pub const EXIT_STATUS: &str = "\
0 success, 2 bad command line, 3 logfile not usable,
5 interrupted, 6 any other failure (including differences found by the check).";

/// One example command line.
pub const EXAMPLE: &str = "cback3-amazons3-sync -b /home/me s3://example-backups/me";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{DEFAULT_LOGFILE, DEFAULT_MAX_CONCURRENCY, DEFAULT_MODE, DEFAULT_OWNER};

    #[test]
    fn usage_mentions_every_switch_and_defaults() {
        let u = usage();
        for sw in SWITCHES {
            assert!(u.contains(&format!("--{}", sw.long)), "{}", sw.long);
        }
        assert!(u.contains(DEFAULT_LOGFILE));
        assert!(u.contains(&format!("{DEFAULT_MODE:o}")));
        assert!(u.contains(&format!("{}:{}", DEFAULT_OWNER.0, DEFAULT_OWNER.1)));
        assert!(u.contains(&DEFAULT_MAX_CONCURRENCY.to_string()));
        for l in u.lines() {
            assert!(l.chars().count() <= 80, "too wide: {l:?}");
        }
    }
}
