//! The man page `man/cback3-amazons3-sync.1`, generated from what `-h` prints: the switch
//! table ([`SWITCHES`]) and the usage texts of [`crate::options`]. A test fails when the
//! committed page differs from [`render`]; `UPDATE_MANPAGE=1 cargo test --test sync
//! the_committed_man_page` rewrites it.

use crate::options::{ABBREVIATIONS, ARGUMENTS, DESCRIPTION, EXAMPLE, EXIT_STATUS, SWITCHES};

/// Text for roff: backslashes and hyphens escaped, lines that would read as requests guarded.
fn roff(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    escaped
        .lines()
        .map(|l| {
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Lines wrapped for an 80-column terminal joined into one paragraph.
fn paragraph(text: &str) -> String {
    roff(&text.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// The operator's reference beyond the switches: what a cron job's owner needs at hand. The
/// details are in docs/ (named in each section).
const REFERENCE: [(&str, &str); 5] = [
    (
        "CHANGE RULE",
        "A file is uploaded when the bucket has no object with its key, when the sizes differ, or \
         when its mtime is newer than the object's LastModified (the aws s3 sync rule, so a bucket \
         filled by the original is not uploaded again). A same-size file newer than its object is \
         settled by the mtime the upload recorded in the object's metadata (asked once with a \
         HeadObject, then kept in a small private cache), so a run where nothing changed sends \
         no HeadObject and uploads nothing. Every upload records the file's mtime, mode, owner \
         and group; every directory below the source is recorded as a zero-byte dir/ marker. \
         Deletes start only after every upload succeeded and the whole tree was read. \
         See docs/sync.md.",
    ),
    (
        "RESTORE",
        "With --restore the objects under the URL are written into the directory, each checked \
         against its stored checksum before it is given its name, and checked on disk again at \
         the end: exit 0 means every object is there. Directories are created 0700 and given \
         their recorded mode, owner and time last; those without a record stay 0700. \
         See docs/restore.md.",
    ),
    (
        "RUN LOCK",
        "A run that may change the bucket (a sync without -v, a restore) first locks its target \
         (endpoint, bucket, prefix; overlapping prefixes conflict) in a directory only its user \
         can write: /run/cback3-s3sync for root, ~/.cache/cback3-s3sync/locks otherwise, or \
         /var/tmp/cback3-s3sync-UID.* when the home cannot be used. A second run of the same user \
         stops with exit 6; runs of other users are neither stopped nor excluded. \
         See docs/operations.md.",
    ),
    (
        "AWS CONFIGURATION",
        "Credentials, region and endpoint come from the standard AWS chain of the user who runs \
         the job (environment, ~/.aws/credentials, ~/.aws/config profiles, SSO, \
         credential_process); a profile's s3 = settings (max_concurrent_requests, \
         max_bandwidth, multipart_threshold, multipart_chunksize, addressing_style, ...) apply \
         to syncs and restores, and a switch wins over them. A config file that does not parse \
         fails the run (exit 6); one that cannot be read is a WARNING. -D prints what a run \
         would use. Off EC2, set AWS_EC2_METADATA_DISABLED=true. See docs/aws.md.",
    ),
    (
        "FILES",
        "/var/log/cback3.log (the default logfile); /run/cback3-s3sync and \
         ~/.cache/cback3-s3sync/locks (run locks, and the mtimes-* cache of recorded mtimes).",
    ),
];

/// The whole page (deterministic: no date, so a rebuild gives the same bytes).
pub fn render() -> String {
    let mut s = String::new();
    s +=
        ".\\\" Generated from the switch table in src/options.rs by src/manpage.rs; do not edit.\n";
    s += &format!(
        ".TH CBACK3\\-AMAZONS3\\-SYNC 1 \"\" \"cback3\\-s3sync {}\" \"User Commands\"\n",
        roff(crate::VERSION)
    );
    s += ".SH NAME\ncback3\\-amazons3\\-sync \\- mirror a local directory into an Amazon S3 bucket prefix and verify the copy\n";
    s += ".SH SYNOPSIS\n.B cback3\\-amazons3\\-sync\n[\\fIswitches\\fR] \\fIsourceDir\\fR \\fIs3BucketUrl\\fR\n";
    s += ".SH DESCRIPTION\n";
    s += &paragraph(DESCRIPTION);
    s += "\n.SH ARGUMENTS\n";
    for (name, what) in ARGUMENTS {
        s += &format!(".TP\n.I {}\n{}\n", roff(name), paragraph(what));
    }
    s += ".SH OPTIONS\n";
    let mut note = paragraph(ABBREVIATIONS);
    if let Some(first) = note.get(..1) {
        note = first.to_uppercase() + &note[1..];
    }
    s += &format!("{note}.\n");
    for sw in SWITCHES {
        let value = sw
            .value_name
            .map(|v| format!(" \\fI{}\\fR", roff(v)))
            .unwrap_or_default();
        let head = match sw.short {
            Some(c) => format!("\\fB\\-{c}\\fR{value}, \\fB\\-\\-{}\\fR{value}", sw.long),
            None => format!("\\fB\\-\\-{}\\fR{value}", roff(sw.long)),
        };
        s += &format!(".TP\n{head}\n{}\n", paragraph(sw.help));
    }
    for (title, text) in REFERENCE {
        s += &format!(".SH {title}\n{}\n", paragraph(text));
    }
    s += ".SH EXIT STATUS\n";
    s += &paragraph(EXIT_STATUS);
    s += "\n.SH EXAMPLE\n.nf\n";
    s += &roff(EXAMPLE);
    s += "\n.fi\n.SH SEE ALSO\n";
    s += "README.md and docs/ of cback3\\-s3sync; the JSON Schema of \\fB\\-\\-summaryFile\\fR is schema/summary.schema.json.\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(roff("a-b\\c"), "a\\-b\\ec");
        assert_eq!(roff(".x\n'y"), "\\&.x\n\\&'y");
        assert_eq!(paragraph("one\ntwo  three"), "one two three");
    }
}
