//! Differential test of the command-line parser against the original tool's `Options` class.
//!
//! A few thousand command lines are generated deterministically from the switch alphabet,
//! abbreviations, values, positionals, `--` and garbage. One python3 process parses them all
//! with `CedarBackup3.tools.amazons3.Options` (validated and with `validate=False`) and prints
//! one JSON record per line; we build the same record from our parser and compare the text.
//! Value errors are compared by kind only (our messages are our own); getopt errors word for
//! word. Each line is also parsed by us with one of our own switches put in front, which must
//! change nothing else.

#![allow(clippy::print_stdout, clippy::print_stderr)] // a test may show what it saw

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::process::{Command, Stdio};

use cback3_s3sync::options::{
    build_argument_list, build_argument_string, parse, parse_unvalidated, Options, OptionsError,
};

use crate::common::Rng;

const CASES: usize = 4000;

const FLAG_LETTERS: &[&str] = &["h", "V", "b", "q", "O", "d", "s", "D", "v", "u", "w"];
const VALUE_LETTERS: &[&str] = &["l", "o", "m"];
const BAD_LETTERS: &[&str] = &["x", ":", "é", "-", "=", "L", "M"];
const LONG_NAMES: &[&str] = &[
    "help",
    "version",
    "verbose",
    "quiet",
    "logfile",
    "owner",
    "mode",
    "output",
    "debug",
    "stack",
    "diagnostics",
    "verifyOnly",
    "uploadOnly",
    "ignoreWarnings",
];
const BAD_LONG: &[&str] = &[
    "", "foo", "Verbose", "verbosee", "max", "maxC", "allow", "dry", "help-", "é",
];
const LOGFILES: &[&str] = &["/tmp/l.log", "", "x y", "-b", "=", "a\"b", "é.log", "--"];
const OWNERS: &[&str] = &["a:b", "root", ":x", "x:", "a:b:c", "", "::", "u:g", "é:ü"];
const MODES: &[&str] = &[
    "640",
    "0644",
    "600",
    "999",
    "abc",
    "",
    "-1",
    "-0",
    "0o17",
    " 17 ",
    "1_7",
    "1__7",
    "_17",
    "17_",
    "+7",
    "7777",
    "10000",
    "8",
    "0x1f",
    "0O_7",
    "\u{663}\u{664}",
    "\u{ff17}",
    "7\u{3000}",
    "\u{1c}7",
    "37777777777",
];
const POSITIONALS: &[&str] = &["src", "s3://b/p", "", "-", "a b", "é", "s3://x", "-b"];

fn value_for(rng: &mut Rng, letter_or_name: &str) -> String {
    match letter_or_name.chars().next() {
        Some('l') => rng.pick(LOGFILES),
        Some('o') => rng.pick(OWNERS),
        Some('m') => rng.pick(MODES),
        _ => rng.pick(&["x", "", "1"]),
    }
    .to_string()
}

fn switch_tokens(rng: &mut Rng, out: &mut Vec<String>) {
    match rng.below(10) {
        // A short cluster, maybe ending in a valued letter.
        0..=3 => {
            let mut s = String::from("-");
            for _ in 0..1 + rng.below(3) {
                s += if rng.chance(5) {
                    rng.pick(BAD_LETTERS)
                } else {
                    rng.pick(FLAG_LETTERS)
                };
            }
            if rng.chance(50) {
                let l = rng.pick(VALUE_LETTERS);
                s += l;
                let v = value_for(rng, l);
                if rng.chance(50) && !v.is_empty() {
                    s += &v;
                } else if rng.chance(95) {
                    out.push(s);
                    out.push(v);
                    return;
                }
            }
            out.push(s);
        }
        // A long name, whole or abbreviated, with or without a value.
        4..=8 => {
            let name = if rng.chance(8) {
                rng.pick(BAD_LONG).to_string()
            } else {
                let full = rng.pick(LONG_NAMES);
                let len = if rng.chance(50) {
                    full.len()
                } else {
                    1 + rng.below(full.len())
                };
                full[..len].to_string()
            };
            let v = value_for(rng, &name);
            match rng.below(10) {
                0..=2 => out.push(format!("--{name}={v}")),
                3..=6 => {
                    out.push(format!("--{name}"));
                    if matches!(name.chars().next(), Some('l' | 'o' | 'm')) && rng.chance(90) {
                        out.push(v);
                    }
                }
                _ => out.push(format!("--{name}")),
            }
        }
        _ => out.push(rng.pick(&["--", "-", "--", "-l"]).to_string()),
    }
}

fn generate(rng: &mut Rng) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..rng.below(5) {
        switch_tokens(rng, &mut out);
    }
    let positionals = match rng.below(10) {
        0 => 0,
        1 => 1,
        2 => 3,
        _ => 2,
    };
    for _ in 0..positionals {
        out.push(rng.pick(POSITIONALS).to_string());
    }
    if rng.chance(10) {
        switch_tokens(rng, &mut out);
    }
    out
}

/// JSON values, written exactly as Python's `json.dumps(..., sort_keys=True)` writes them.
enum Json {
    Null,
    Bool(bool),
    Num(u64),
    Str(String),
    List(Vec<Json>),
    Obj(BTreeMap<&'static str, Json>),
}

fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e && (c as u32) != 0x7f => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl Json {
    fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Num(n) => out.push_str(&n.to_string()),
            Json::Str(s) => write_str(out, s),
            Json::List(items) => {
                out.push('[');
                for (i, x) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    x.write(out);
                }
                out.push(']');
            }
            Json::Obj(m) => {
                out.push('{');
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_str(out, k);
                    out.push_str(": ");
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
    fn text(&self) -> String {
        let mut s = String::new();
        self.write(&mut s);
        s
    }
}

fn strs(items: &[String]) -> Json {
    Json::List(items.iter().map(|s| Json::Str(s.clone())).collect())
}

fn opt_str(s: Option<String>) -> Json {
    s.map(Json::Str).unwrap_or(Json::Null)
}

fn record(result: Result<Options, OptionsError>) -> Json {
    let mut m = BTreeMap::new();
    match result {
        Err(OptionsError::Getopt(msg)) => {
            m.insert("error", Json::Str("getopt".into()));
            m.insert("msg", Json::Str(msg));
        }
        Err(OptionsError::Value(_)) => {
            m.insert("error", Json::Str("value".into()));
        }
        Ok(o) => {
            let path = |p: &Option<std::path::PathBuf>| {
                opt_str(p.as_ref().map(|p| p.to_str().unwrap().to_string()))
            };
            m.insert("help", Json::Bool(o.help));
            m.insert("version", Json::Bool(o.version));
            m.insert("verbose", Json::Bool(o.verbose));
            m.insert("quiet", Json::Bool(o.quiet));
            m.insert("logfile", path(&o.logfile));
            m.insert(
                "owner",
                match &o.owner {
                    Some((u, g)) => strs(&[u.clone(), g.clone()]),
                    None => Json::Null,
                },
            );
            m.insert(
                "mode",
                o.mode.map(|x| Json::Num(x.into())).unwrap_or(Json::Null),
            );
            m.insert("output", Json::Bool(o.output));
            m.insert("debug", Json::Bool(o.debug));
            m.insert("stacktrace", Json::Bool(o.stacktrace));
            m.insert("diagnostics", Json::Bool(o.diagnostics));
            m.insert("verifyOnly", Json::Bool(o.verify_only));
            m.insert("uploadOnly", Json::Bool(o.upload_only));
            m.insert("ignoreWarnings", Json::Bool(o.ignore_warnings));
            m.insert("sourceDir", path(&o.source_dir));
            m.insert("s3BucketUrl", opt_str(o.s3_bucket_url.clone()));
            m.insert("list", strs(&build_argument_list(&o)));
            m.insert("string", Json::Str(build_argument_string(&o)));
        }
    }
    Json::Obj(m)
}

fn ours(argv: &[String]) -> String {
    let os: Vec<OsString> = argv.iter().map(OsString::from).collect();
    let mut m = BTreeMap::new();
    m.insert("validated", record(parse(&os)));
    m.insert("unvalidated", record(parse_unvalidated(&os)));
    Json::Obj(m).text()
}

/// Ours with one of our own switches in front, then that switch's effect removed: must equal
/// the plain line's record.
fn ours_with_new_switch(argv: &[String], which: usize) -> String {
    let (extra, undo): (Vec<&str>, fn(&mut Options)) = match which % 3 {
        0 => (vec!["--maxConcurrency=7"], |o| {
            assert_eq!(o.max_concurrency, Some(7));
            o.max_concurrency = None;
        }),
        1 => (vec!["--maxConcurrency", "12"], |o| {
            assert_eq!(o.max_concurrency, Some(12));
            o.max_concurrency = None;
        }),
        _ => (vec!["--allowEmptySource"], |o| {
            assert!(o.allow_empty_source);
            o.allow_empty_source = false;
        }),
    };
    let os: Vec<OsString> = extra
        .iter()
        .map(OsString::from)
        .chain(argv.iter().map(OsString::from))
        .collect();
    let fix = |r: Result<Options, OptionsError>| {
        r.map(|mut o| {
            undo(&mut o);
            o
        })
    };
    let mut m = BTreeMap::new();
    m.insert("validated", record(fix(parse(&os))));
    m.insert("unvalidated", record(fix(parse_unvalidated(&os))));
    Json::Obj(m).text()
}

const PYTHON: &str = r#"
import getopt, json, sys
try:
    from CedarBackup3.tools.amazons3 import Options
except ImportError as e:
    print("IMPORT FAILED: %s" % e, file=sys.stderr)
    sys.exit(17)

def record(argv, validate):
    try:
        o = Options(argumentList=argv, validate=validate)
    except getopt.GetoptError as e:
        return {"error": "getopt", "msg": str(e)}
    except ValueError:
        return {"error": "value"}
    return {
        "help": o.help, "version": o.version, "verbose": o.verbose, "quiet": o.quiet,
        "logfile": o.logfile, "owner": list(o.owner) if o.owner is not None else None,
        "mode": o.mode, "output": o.output, "debug": o.debug, "stacktrace": o.stacktrace,
        "diagnostics": o.diagnostics, "verifyOnly": o.verifyOnly, "uploadOnly": o.uploadOnly,
        "ignoreWarnings": o.ignoreWarnings, "sourceDir": o.sourceDir,
        "s3BucketUrl": o.s3BucketUrl, "list": o.buildArgumentList(validate=False),
        "string": o.buildArgumentString(validate=False),
    }

for argv in json.load(sys.stdin):
    print(json.dumps({"validated": record(argv, True), "unvalidated": record(argv, False)},
                     sort_keys=True))
"#;

fn original(cases: &[Vec<String>]) -> Vec<String> {
    let input = strs_list(cases);
    let mut child = Command::new("python3")
        .args(["-c", PYTHON])
        .env("PYTHONIOENCODING", "utf-8")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed for this test (and then: pip install cedar-backup3)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() != Some(17),
        "the original tool is not importable ({stderr}); run: pip install cedar-backup3"
    );
    assert!(out.status.success(), "python3 failed: {stderr}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn strs_list(cases: &[Vec<String>]) -> String {
    Json::List(cases.iter().map(|c| strs(c)).collect()).text()
}

#[test]
fn parser_agrees_with_the_original() {
    let mut rng = Rng::new(0x00c3_ba5e_d5ee_d001);
    let mut cases: Vec<Vec<String>> = vec![
        vec![],
        vec!["--".into()],
        vec!["-bq".into(), "a".into(), "b".into()],
        vec!["--ver".into()],
        vec!["--m".into(), "7".into(), "a".into(), "b".into()],
    ];
    while cases.len() < CASES {
        cases.push(generate(&mut rng));
    }
    let theirs = original(&cases);
    assert_eq!(theirs.len(), cases.len(), "one result line per case");
    let (mut accepted, mut getopt_errors, mut value_errors) = (0, 0, 0);
    for (i, (argv, want)) in cases.iter().zip(&theirs).enumerate() {
        assert_eq!(&ours(argv), want, "case {i}: {argv:?}");
        assert_eq!(
            &ours_with_new_switch(argv, i),
            want,
            "case {i} with a new switch in front: {argv:?}"
        );
        let v = want.split("\"validated\": ").nth(1).unwrap();
        if v.starts_with("{\"error\": \"getopt\"") {
            getopt_errors += 1;
        } else if v.starts_with("{\"error\": \"value\"") {
            value_errors += 1;
        } else {
            accepted += 1;
        }
    }
    eprintln!("accepted {accepted}, getopt errors {getopt_errors}, value errors {value_errors}");
    // The generator must exercise every outcome, or the comparison proves little.
    for (what, n) in [
        ("accepted", accepted),
        ("getopt errors", getopt_errors),
        ("value errors", value_errors),
    ] {
        assert!(n > CASES / 20, "only {n} {what} among {CASES} cases");
    }
}

#[test]
fn json_writer_matches_python_escaping() {
    let mut s = String::new();
    write_str(&mut s, "a\"\\\n\t\u{1}é\u{1f600}~\u{7f}");
    assert_eq!(
        s,
        r#""a\"\\\n\t\u0001\u00e9\ud83d\ude00~\u007f""#.replace("\\u007f", "\u{7f}")
    );
}
