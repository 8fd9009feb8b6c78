//! Table tests of the getopt-compatible parser and of the argument-list writer.

use std::ffi::OsString;
use std::path::PathBuf;

use cback3_s3sync::options::{
    build_argument_list, build_argument_string, parse, parse_unvalidated, Options, OptionsError,
};

fn argv(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

fn ok(args: &[&str]) -> Options {
    match parse(&argv(args)) {
        Ok(o) => o,
        Err(e) => panic!("{args:?} rejected: {e}"),
    }
}

fn getopt_err(args: &[&str]) -> String {
    match parse(&argv(args)) {
        Err(OptionsError::Getopt(m)) => m,
        other => panic!("{args:?}: expected a getopt error, got {other:?}"),
    }
}

fn value_err(args: &[&str]) {
    match parse(&argv(args)) {
        Err(OptionsError::Value(_)) => {}
        other => panic!("{args:?}: expected a value error, got {other:?}"),
    }
}

fn base() -> Options {
    Options {
        source_dir: Some(PathBuf::from("src")),
        s3_bucket_url: Some("s3://b/p".into()),
        ..Options::default()
    }
}

#[test]
fn clusters_and_attached_values() {
    let cases: &[(&[&str], Options)] = &[
        (
            &["-bq", "src", "s3://b/p"],
            Options {
                verbose: true,
                quiet: true,
                ..base()
            },
        ),
        (
            &["-bdOsvuw", "src", "s3://b/p"],
            Options {
                verbose: true,
                debug: true,
                output: true,
                stacktrace: true,
                verify_only: true,
                upload_only: true,
                ignore_warnings: true,
                ..base()
            },
        ),
        (
            &["-blFILE", "src", "s3://b/p"],
            Options {
                verbose: true,
                logfile: Some("FILE".into()),
                ..base()
            },
        ),
        (
            &["-bl", "-q", "src", "s3://b/p"],
            Options {
                verbose: true,
                logfile: Some("-q".into()),
                ..base()
            },
        ),
        (
            &["-m600", "-o", "a:b:c", "src", "s3://b/p"],
            Options {
                mode: Some(0o600),
                owner: Some(("a".into(), "b:c".into())),
                ..base()
            },
        ),
        (
            &["--logfile=x=y", "--mode", "0o17", "src", "s3://b/p"],
            Options {
                logfile: Some("x=y".into()),
                mode: Some(0o17),
                ..base()
            },
        ),
    ];
    for (args, want) in cases {
        assert_eq!(&ok(args), want, "{args:?}");
    }
}

#[test]
fn abbreviations() {
    assert!(ok(&["--verb", "a", "b"]).verbose);
    assert!(ok(&["--vers"]).version);
    assert!(ok(&["--vers", "--h"]).help);
    assert!(ok(&["--ou", "a", "b"]).output);
    assert_eq!(
        ok(&["--ow", "u:g", "a", "b"]).owner,
        Some(("u".into(), "g".into()))
    );
    assert_eq!(ok(&["--log=F", "a", "b"]).logfile, Some(PathBuf::from("F")));
    assert!(ok(&["--i", "--up", "--verif", "--st", "--dia", "a", "b"]).ignore_warnings);
    assert_eq!(getopt_err(&["--ver"]), "option --ver not a unique prefix");
    assert_eq!(getopt_err(&["--v"]), "option --v not a unique prefix");
    assert_eq!(getopt_err(&["--o", "x"]), "option --o not a unique prefix");
    assert_eq!(getopt_err(&["--d"]), "option --d not a unique prefix");
    assert_eq!(getopt_err(&["--=x"]), "option -- not a unique prefix");
    assert_eq!(getopt_err(&["--foo"]), "option --foo not recognized");
    assert_eq!(
        getopt_err(&["--Verbose"]),
        "option --Verbose not recognized"
    );
    assert_eq!(
        getopt_err(&["--verbosee"]),
        "option --verbosee not recognized"
    );
}

#[test]
fn unknown_and_malformed_switches() {
    assert_eq!(getopt_err(&["-x"]), "option -x not recognized");
    assert_eq!(getopt_err(&["-bx", "a", "b"]), "option -x not recognized");
    assert_eq!(getopt_err(&["-:"]), "option -: not recognized");
    assert_eq!(getopt_err(&["-é"]), "option -é not recognized");
    assert_eq!(getopt_err(&["-l"]), "option -l requires argument");
    assert_eq!(getopt_err(&["-bm"]), "option -m requires argument");
    assert_eq!(
        getopt_err(&["--logfile"]),
        "option --logfile requires argument"
    );
    assert_eq!(getopt_err(&["--log"]), "option --logfile requires argument");
    assert_eq!(
        getopt_err(&["--verbose=1"]),
        "option --verbose must not have an argument"
    );
    assert_eq!(
        getopt_err(&["--verb=", "a", "b"]),
        "option --verbose must not have an argument"
    );
    // getopt errors come before value errors, wherever they are.
    assert_eq!(getopt_err(&["-m", "abc", "-x"]), "option -x not recognized");
}

#[test]
fn repeats_and_precedence() {
    assert_eq!(
        ok(&["-l", "a", "-l", "b", "s", "u"]).logfile,
        Some(PathBuf::from("b"))
    );
    // Long form wins whatever the order.
    assert_eq!(
        ok(&["--logfile", "long", "-l", "short", "s", "u"]).logfile,
        Some(PathBuf::from("long"))
    );
    assert_eq!(ok(&["--mode=600", "-m", "644", "s", "u"]).mode, Some(0o600));
    assert_eq!(
        ok(&["-o", "a:b", "--owner", "c:d", "-o", "e:f", "s", "u"]).owner,
        Some(("c".into(), "d".into()))
    );
    // The overridden short value is still checked, as in the original.
    value_err(&["-m", "abc", "--mode", "644", "s", "u"]);
    // Only the last of each spelling is checked.
    assert_eq!(ok(&["-m", "abc", "-m", "7", "s", "u"]).mode, Some(7));
    assert_eq!(
        ok(&["--maxConcurrency=3", "--maxConcurrency", "9", "s", "u"]).max_concurrency,
        Some(9)
    );
}

#[test]
fn end_of_options() {
    let o = ok(&["--", "-b", "s3://b/p"]);
    assert_eq!(o.source_dir, Some(PathBuf::from("-b")));
    assert!(!o.verbose);
    // getopt stops at the first positional: later switches are positionals.
    value_err(&["src", "-b", "s3://b/p"]);
    let o = ok(&["-", "s3://b/p"]);
    assert_eq!(o.source_dir, Some(PathBuf::from("-")));
    value_err(&["--", "--", "a", "b"]);
}

#[test]
fn bad_values() {
    value_err(&["-m", "999", "s", "u"]);
    value_err(&["-m", "abc", "s", "u"]);
    value_err(&["-m", "-1", "s", "u"]);
    value_err(&["-m", "", "s", "u"]);
    value_err(&["-o", "root", "s", "u"]);
    value_err(&["-o", ":x", "s", "u"]);
    value_err(&["-o", "x:", "s", "u"]);
    value_err(&["-l", "", "s", "u"]);
    value_err(&["--logfile=", "s", "u"]);
    value_err(&["--maxConcurrency=0", "s", "u"]);
    value_err(&["--maxConcurrency", "x", "s", "u"]);
    value_err(&["--maxConcurrency=-3", "s", "u"]);
    // Bad values fail even with -h, as in the original.
    value_err(&["-h", "-m", "8"]);
}

#[test]
fn positional_count() {
    value_err(&[]);
    value_err(&["one"]);
    value_err(&["one", "two", "three"]);
    value_err(&["", "s3://b/p"]);
    value_err(&["src", ""]);
    for flag in ["-h", "-V", "-D", "--help", "--version", "--diagnostics"] {
        assert!(parse(&argv(&[flag])).is_ok(), "{flag}");
        assert!(parse(&argv(&[flag, "a", "b", "c"])).is_ok(), "{flag}");
    }
    let o = ok(&["-h", "a", "b"]);
    assert_eq!(o.source_dir, Some(PathBuf::from("a")));
    // Unvalidated parsing keeps what it can, like validate=False.
    let o = parse_unvalidated(&argv(&["src", ""])).unwrap();
    assert_eq!(o.source_dir, Some(PathBuf::from("src")));
    assert_eq!(o.s3_bucket_url, None);
    let o = parse_unvalidated(&argv(&["a", "b", "c"])).unwrap();
    assert_eq!(o.source_dir, None);
    assert!(o.validate().is_err());
}

#[test]
fn new_switches_must_be_written_in_full() {
    let o = ok(&["--maxConcurrency=8", "--allowEmptySource", "s", "u"]);
    assert_eq!(o.max_concurrency, Some(8));
    assert_eq!(o.concurrency(), 8);
    assert!(o.allow_empty_source);
    assert_eq!(ok(&["s", "u"]).concurrency(), 64);
    assert_eq!(
        getopt_err(&["--maxConcurrency"]),
        "option --maxConcurrency requires argument"
    );
    assert_eq!(
        getopt_err(&["--allowEmptySource=yes"]),
        "option --allowEmptySource must not have an argument"
    );
    assert_eq!(getopt_err(&["--max=3"]), "option --max not recognized");
    assert_eq!(getopt_err(&["--allow"]), "option --allow not recognized");
    assert_eq!(
        getopt_err(&["--maxconcurrency=3"]),
        "option --maxconcurrency not recognized"
    );
    // Our names do not disturb the original's abbreviations.
    assert_eq!(getopt_err(&["--a"]), "option --a not recognized");
    // --m still means --mode, as for the original, although --maxConcurrency exists.
    assert_eq!(ok(&["--m", "7", "s", "u"]).mode, Some(7));
}

#[test]
fn argument_list_round_trip() {
    let o = ok(&[
        "-bqdOsDvuw",
        "-l",
        "/tmp/x y.log",
        "-o",
        "u:g",
        "-m",
        "0640",
        "--maxConcurrency",
        "5",
        "--allowEmptySource",
        "-h",
        "-V",
        "src dir",
        "s3://b/p",
    ]);
    let list = build_argument_list(&o);
    assert_eq!(
        list,
        [
            "--help",
            "--version",
            "--verbose",
            "--quiet",
            "--logfile",
            "/tmp/x y.log",
            "--owner",
            "u:g",
            "--mode",
            "640",
            "--output",
            "--debug",
            "--stack",
            "--diagnostics",
            "--verifyOnly",
            "--uploadOnly",
            "--ignoreWarnings",
            "--maxConcurrency",
            "5",
            "--allowEmptySource",
            "src dir",
            "s3://b/p"
        ]
    );
    assert_eq!(
        parse(&argv(&list.iter().map(String::as_str).collect::<Vec<_>>())).unwrap(),
        o
    );
    assert_eq!(
        build_argument_string(&o),
        "--help --version --verbose --quiet --logfile \"/tmp/x y.log\" --owner \"u:g\" \
         --mode 640 --output --debug --stack --diagnostics --verifyOnly --uploadOnly \
         --ignoreWarnings --maxConcurrency 5 --allowEmptySource \"src dir\" \"s3://b/p\" "
    );
    assert_eq!(build_argument_string(&Options::default()), "");
    assert_eq!(
        build_argument_string(&ok(&["-b", "a", "b"])),
        "--verbose \"a\" \"b\" "
    );
}
