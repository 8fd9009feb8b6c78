//! Writing options back as an argument list or string (the original's `buildArgumentList`).

use super::model::Options;
use super::switches::Emit;
use super::switches::SWITCHES;

/// The options as an argument list with long switch names in a fixed order, which
/// [`parse`](super::parse) reads back to the same options. For the original's switches it is what the
/// original's `buildArgumentList` gives; ours follow them, before the positional arguments.
/// Does not validate: call [`Options::validate`] first for the original's default behaviour.
pub fn build_argument_list(o: &Options) -> Vec<String> {
    let mut out = Vec::new();
    for sw in SWITCHES {
        match sw.emit(o) {
            Emit::Absent => {}
            Emit::Flag => out.push(format!("--{}", sw.long)),
            Emit::Value { text, .. } => {
                out.push(format!("--{}", sw.long));
                out.push(text);
            }
        }
    }
    out.extend(
        o.source_dir
            .iter()
            .map(|p| p.to_string_lossy().into_owned()),
    );
    out.extend(o.s3_bucket_url.iter().cloned());
    out
}

/// The options as one string, as the original's `buildArgumentString` writes it (each item
/// followed by a space; paths, owner and positionals in double quotes). Does not validate.
pub fn build_argument_string(o: &Options) -> String {
    let mut out = String::new();
    for sw in SWITCHES {
        match sw.emit(o) {
            Emit::Absent => {}
            Emit::Flag => out += &format!("--{} ", sw.long),
            Emit::Value { text, quoted: true } => out += &format!("--{} \"{text}\" ", sw.long),
            Emit::Value {
                text,
                quoted: false,
            } => out += &format!("--{} {text} ", sw.long),
        }
    }
    if let Some(p) = &o.source_dir {
        out += &format!("\"{}\" ", p.to_string_lossy());
    }
    if let Some(u) = &o.s3_bucket_url {
        out += &format!("\"{u}\" ");
    }
    out
}

/// Splits an argument string the way Cedar Backup splits `argumentString`: only a plain
/// space separates, a double-quoted run with at least one character is one field, and an
/// empty or unterminated quote contributes nothing.
pub fn split_argument_string(text: &str) -> Vec<String> {
    let c: Vec<char> = text.chars().collect();
    let (mut fields, mut i) = (Vec::new(), 0);
    while i < c.len() {
        if c[i] == ' ' {
            i += 1;
        } else if c[i] == '"' {
            match c[i + 1..].iter().position(|&x| x == '"') {
                Some(len) if len > 0 => {
                    fields.push(c[i + 1..i + 1 + len].iter().collect());
                    i += len + 2;
                }
                _ => i += 1,
            }
        } else {
            let len = c[i..].iter().position(|&x| x == ' ' || x == '"');
            let end = len.map_or(c.len(), |n| i + n);
            fields.push(c[i..end].iter().collect());
            i = end;
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;
    use crate::options::{parse_unvalidated, Kind, Value};

    /// A value every switch of the kind accepts.
    fn sample(kind: Kind) -> Value {
        match kind {
            Kind::Flag => Value::Flag(true),
            Kind::Path => Value::Path(Some("/tmp/a b/\u{e9}".into())),
            Kind::Owner => Value::Owner(Some(("backup".into(), "adm".into()))),
            Kind::Mode => Value::Int(Some(0o604)),
            Kind::Count | Kind::Rate => Value::Int(Some(7)),
            Kind::Choice => Value::Text(Some("AES256".into())),
            Kind::Text => Value::Text(Some("alias/my key".into())),
        }
    }

    #[test]
    fn argument_strings_split_as_cedar_backup_splits_them() {
        let split = |t: &str| split_argument_string(t);
        assert_eq!(
            split(r#"-b  "a b" c"d"e "" "x"#),
            ["-b", "a b", "c", "d", "e", " ", "x"]
        );
        assert_eq!(split(r#""""#), Vec::<String>::new());
        assert_eq!(split("\u{e9}\t x"), ["\u{e9}\t", "x"]);
    }

    #[test]
    fn every_switch_round_trips_through_the_argument_list() {
        for sw in SWITCHES {
            let mut o = Options::default();
            let mut value = sample(sw.field.kind());
            if sw.long == "storageClass" {
                value = Value::Text(Some("GLACIER_IR".into()));
            }
            sw.field.set(&mut o, value.clone()).unwrap();
            assert_eq!(sw.field.get(&o), value, "{}", sw.long);
            assert_eq!(
                sw.field.kind() == Kind::Flag,
                !sw.takes_value(),
                "{}",
                sw.long
            );
            let args: Vec<OsString> = build_argument_list(&o)
                .into_iter()
                .map(Into::into)
                .collect();
            assert!(!args.is_empty(), "{} not written", sw.long);
            assert_eq!(parse_unvalidated(&args), Ok(o), "{}: {args:?}", sw.long);
        }
    }
}
