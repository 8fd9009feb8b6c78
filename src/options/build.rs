//! Writing options back as an argument list or string (the original's `buildArgumentList`).

use super::switches::Emit;
use super::{Options, SWITCHES};

/// The options as an argument list with long switch names in a fixed order, which
/// [`parse`] reads back to the same options. For the original's switches it is what the
/// original's `buildArgumentList` gives; ours follow them, before the positional arguments.
/// Does not validate: call [`Options::validate`] first for the original's default behaviour.
pub fn build_argument_list(o: &Options) -> Vec<String> {
    let mut out = Vec::new();
    for sw in SWITCHES {
        match (sw.emit)(o) {
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
        match (sw.emit)(o) {
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
