//! The man page `man/cback3-amazons3-sync.1`, generated from what `-h` prints: the switch
//! table ([`SWITCHES`]) and the usage texts of [`crate::options`]. A test fails when the
//! committed page differs from [`render`]; `UPDATE_MANPAGE=1 cargo test --test features
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
    s += ".SH EXIT STATUS\n";
    s += &paragraph(EXIT_STATUS);
    s += "\n.SH EXAMPLE\n.nf\n";
    s += &roff(EXAMPLE);
    s += "\n.fi\n.SH SEE ALSO\n";
    s += "README.md of cback3\\-s3sync; the JSON Schema of \\fB\\-\\-summaryFile\\fR is schema/summary.schema.json.\n";
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
