//! Python `getopt` emulation and applying the switches found, in the table's order.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use super::model::{Options, OptionsError};
use super::switches::utf8;
use super::switches::SWITCHES;

/// One switch as `getopt` found it: index into [`SWITCHES`], whether the long spelling was
/// used, and its value (empty for flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub switch: usize,
    pub long: bool,
    pub value: OsString,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Resolves a long name the way Python's getopt does, except that our own names are found
/// only when written in full.
fn resolve_long(name: &[u8]) -> Result<usize, OptionsError> {
    if let Some(i) = SWITCHES
        .iter()
        .position(|s| !s.original && s.long.as_bytes() == name)
    {
        return Ok(i);
    }
    let candidates: Vec<usize> = (0..SWITCHES.len())
        .filter(|&i| SWITCHES[i].original && SWITCHES[i].long.as_bytes().starts_with(name))
        .collect();
    if candidates.is_empty() {
        return Err(OptionsError::Getopt(format!(
            "option --{} not recognized",
            lossy(name)
        )));
    }
    if let Some(&i) = candidates
        .iter()
        .find(|&&i| SWITCHES[i].long.as_bytes() == name)
    {
        return Ok(i);
    }
    if candidates.len() > 1 {
        return Err(OptionsError::Getopt(format!(
            "option --{} not a unique prefix",
            lossy(name)
        )));
    }
    Ok(candidates[0])
}

/// Length of the character starting at `b[0]` (1 for a byte that starts no valid character).
fn char_len(b: &[u8]) -> usize {
    let want = match b[0] {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => return 1,
    };
    if b.len() >= want && std::str::from_utf8(&b[..want]).is_ok() {
        want
    } else {
        1
    }
}

/// Python's `getopt.getopt(args, short_switches(), long names)`: the switches found, in order,
/// and the remaining (positional) arguments.
pub fn getopt(args: &[OsString]) -> Result<(Vec<Found>, Vec<OsString>), OptionsError> {
    let mut found = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_bytes();
        if !arg.starts_with(b"-") || arg == b"-" {
            break;
        }
        i += 1;
        if arg == b"--" {
            break;
        }
        if let Some(body) = arg.strip_prefix(b"--") {
            let (name, attached) = match body.iter().position(|&c| c == b'=') {
                Some(eq) => (&body[..eq], Some(&body[eq + 1..])),
                None => (body, None),
            };
            let idx = resolve_long(name)?;
            let sw = &SWITCHES[idx];
            let value = match (sw.takes_value(), attached) {
                (true, Some(v)) => OsString::from_vec(v.to_vec()),
                (true, None) => {
                    let Some(v) = args.get(i) else {
                        return Err(OptionsError::Getopt(format!(
                            "option --{} requires argument",
                            sw.long
                        )));
                    };
                    i += 1;
                    v.clone()
                }
                (false, Some(_)) => {
                    return Err(OptionsError::Getopt(format!(
                        "option --{} must not have an argument",
                        sw.long
                    )))
                }
                (false, None) => OsString::new(),
            };
            found.push(Found {
                switch: idx,
                long: true,
                value,
            });
        } else {
            let mut rest = &arg[1..];
            while !rest.is_empty() {
                let n = char_len(rest);
                let unit = &rest[..n];
                rest = &rest[n..];
                let idx = SWITCHES
                    .iter()
                    .position(|s| {
                        s.short
                            .is_some_and(|c| c.is_ascii() && unit == [c as u8].as_slice())
                    })
                    .ok_or_else(|| {
                        OptionsError::Getopt(format!("option -{} not recognized", lossy(unit)))
                    })?;
                let value = if SWITCHES[idx].takes_value() {
                    let v = if !rest.is_empty() {
                        OsString::from_vec(rest.to_vec())
                    } else if let Some(v) = args.get(i) {
                        i += 1;
                        v.clone()
                    } else {
                        return Err(OptionsError::Getopt(format!(
                            "option -{} requires argument",
                            lossy(unit)
                        )));
                    };
                    rest = &[];
                    v
                } else {
                    OsString::new()
                };
                found.push(Found {
                    switch: idx,
                    long: false,
                    value,
                });
            }
        }
    }
    Ok((found, args[i..].to_vec()))
}

/// Parses argv (without the program name) and validates it, like the original's
/// `Options(argumentList=args)`.
pub fn parse(args: &[OsString]) -> Result<Options, OptionsError> {
    let o = parse_unvalidated(args)?;
    o.validate()?;
    Ok(o)
}

/// Parses argv without [`Options::validate`] (the original's `validate=False`): bad switches
/// and bad values are still errors.
pub fn parse_unvalidated(args: &[OsString]) -> Result<Options, OptionsError> {
    let (found, rest) = getopt(args)?;
    // The last occurrence of each spelling (short, long) of each switch.
    let mut last: Vec<[Option<&OsStr>; 2]> = vec![[None, None]; SWITCHES.len()];
    for f in &found {
        last[f.switch][usize::from(f.long)] = Some(&f.value);
    }
    let mut o = Options::default();
    for (sw, spellings) in SWITCHES.iter().zip(&last) {
        for v in spellings.iter().flatten() {
            sw.apply(&mut o, v)?;
        }
    }
    // Like the original: positionals count only when there are exactly two, and an empty one
    // is dropped together with everything after it.
    if let [source, url] = rest.as_slice() {
        if !source.is_empty() {
            o.source_dir = Some(PathBuf::from(source));
            if !url.is_empty() {
                o.s3_bucket_url = Some(utf8("S3 bucket URL", url)?.to_owned());
            }
        }
    }
    Ok(o)
}
