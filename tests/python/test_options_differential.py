"""Our Options against the original class: same accept/reject (and exception type), same
property values, same argument list and string, same ordering. Inputs are generated from a
fixed seed, so a failure always reproduces."""

from __future__ import annotations

import getopt
import itertools
import random
from typing import Any

import pytest
from CedarBackup3.tools import amazons3 as original
from CedarBackup3.util import splitCommandLine

from cback3_s3sync import _core
from cback3_s3sync import amazons3 as ours

PROPERTIES = [
    "help", "version", "verbose", "quiet", "logfile", "owner", "mode", "output", "debug",
    "stacktrace", "diagnostics", "verifyOnly", "uploadOnly", "ignoreWarnings", "sourceDir",
    "s3BucketUrl",
]  # fmt: skip

# Pieces of command lines: switches in every spelling getopt allows, good and bad values,
# abbreviations (unique and ambiguous), and positional arguments.
# fmt: off
SWITCHES = [
    ["-h"], ["-V"], ["-b"], ["-q"], ["-O"], ["-d"], ["-s"], ["-D"], ["-v"], ["-u"], ["-w"],
    ["-bq"], ["-vu"], ["-bdO"], ["-x"], ["-"], ["--"],
    ["-l", "/tmp/log file"], ["-l/tmp/attached.log"], ["-bl", "x.log"], ["-l"], ["-l", ""],
    ["-o", "backup:adm"], ["-o", "justuser"], ["-o", ":adm"], ["-o", "u:"], ["-o", "a:b:c"],
    ["-m", "640"], ["-m0755"], ["-m", "8"], ["-m", "-1"], ["-m", "0o17"], ["-m", " 644 "],
    ["-m", "6_4_4"], ["-m", ""], ["-m", "abc"],
    ["--help"], ["--version"], ["--verbose"], ["--verb"], ["--ver"], ["--v"], ["--quiet"], ["--q"],
    ["--logfile=/tmp/l.log"], ["--logfile", "/tmp/l2.log"], ["--log=x"], ["--logfile="], ["--logfile"],
    ["--owner=root:adm"], ["--owner", "a:b"], ["--o=a:b"], ["--ow=x:y"], ["--owner=nocolon"],
    ["--mode=600"], ["--mode", "7777"], ["--m=644"], ["--mode=9"], ["--mode"],
    ["--output"], ["--out"], ["--debug"], ["--d"], ["--de"], ["--stack"], ["--st"], ["--diagnostics"],
    ["--diag"], ["--verifyOnly"], ["--verifyOnly=yes"], ["--uploadOnly"], ["--up"], ["--u"],
    ["--ignoreWarnings"], ["--i"], ["--help=1"], ["--bogus"], ["--Help"], ["--VERBOSE"],
]
POSITIONALS = [
    ["src"], ["s3://bucket/prefix"], ["/tmp/dír with space"], ["s3://b"], [""], ["-"], ["x"],
]
# fmt: on


def outcome(**kwargs: Any) -> tuple[Any, ...]:
    """What constructing Options did, comparably for both classes."""
    cls = kwargs.pop("cls")
    try:
        o = cls(**kwargs)
    except getopt.GetoptError as e:
        return ("GetoptError", e.msg)
    except Exception as e:
        return (type(e).__name__,)
    return (
        "ok",
        tuple(getattr(o, p) for p in PROPERTIES),
        o.buildArgumentList(validate=False),
        o.buildArgumentString(validate=False),
        repr(o),
        str(o),
    )


def generated_lists(count: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    out: list[list[str]] = [[]]
    for _ in range(count):
        args: list[str] = []
        for _ in range(rng.randint(0, 4)):
            args += rng.choice(SWITCHES)
        for _ in range(rng.choice([0, 1, 2, 2, 2, 3])):
            args += rng.choice(POSITIONALS)
        if rng.random() < 0.2:  # a switch after a positional is a positional for getopt
            args += rng.choice(SWITCHES)
        out.append(args)
    return out


LISTS = generated_lists(600, seed=20261126)


@pytest.mark.parametrize("validate", [True, False])
def test_argument_lists_parse_like_the_original(validate: bool) -> None:
    differences = []
    for args in LISTS:
        want = outcome(cls=original.Options, argumentList=list(args), validate=validate)
        got = outcome(cls=ours.Options, argumentList=list(args), validate=validate)
        if got != want:
            differences.append(f"{args!r}:\n  original {want!r}\n  ours     {got!r}")
    assert not differences, f"{len(differences)} of {len(LISTS)} differ:\n" + "\n".join(differences[:25])


def quoted(args: list[str]) -> str:
    return " ".join(f'"{a}"' if (" " in a or not a) else a for a in args)


STRINGS = [quoted(a) for a in LISTS[:300]] + [
    '--logfile "unterminated',
    '"" src s3://b/p',
    'a"b c"d s3://b/p',
    "--mode  640  src\ts3://b/p",
    '  -b   "/tmp/a b"   "s3://b/p q"  ',
]


def test_argument_strings_parse_like_the_original() -> None:
    differences = []
    for text in STRINGS:
        want = outcome(cls=original.Options, argumentString=text)
        got = outcome(cls=ours.Options, argumentString=text)
        if got != want:
            differences.append(f"{text!r}:\n  original {want!r}\n  ours     {got!r}")
    assert not differences, f"{len(differences)} of {len(STRINGS)} differ:\n" + "\n".join(differences[:25])


@pytest.mark.parametrize(
    "text",
    ["", "a b", '"a b" c', 'x"y z"w', '""', '"open', "tab\tsep", '" "', '"a""b"', "  lead trail  "],
)
def test_argument_string_split_matches(text: str) -> None:
    assert _core.split_argument_string(text) == splitCommandLine(text)


def test_both_arguments_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not both"):
        ours.Options(argumentList=["a", "b"], argumentString="a b")
    assert outcome(cls=ours.Options, argumentList=[], argumentString="") == outcome(
        cls=original.Options, argumentList=[], argumentString=""
    )


# fmt: off
VALUES: list[Any] = [
    None, True, False, 0, 1, "", "x", "a:b", "644", "0o644", "8", "-1", -1, 420, 3.7, [], ["a"],
    ["a", "b"], ("u", "g"), ["", "g"], ("u", ""), ["a", "b", "c"], b"/tmp/bytes", object(),
]
# fmt: on


def assign(cls: type, prop: str, value: Any) -> tuple[Any, ...]:
    o = cls()
    try:
        setattr(o, prop, value)
    except Exception as e:
        return (type(e).__name__,)
    return ("ok", getattr(o, prop))


@pytest.mark.parametrize("prop", PROPERTIES)
def test_property_setters_validate_like_the_original(prop: str) -> None:
    for value in VALUES:
        want, got = assign(original.Options, prop, value), assign(ours.Options, prop, value)
        assert got == want, f"{prop} = {value!r}"


def test_empty_options_match() -> None:
    assert outcome(cls=ours.Options) == outcome(cls=original.Options)
    with pytest.raises(ValueError):
        ours.Options().validate()
    with pytest.raises(ValueError):
        ours.Options().buildArgumentList()
    with pytest.raises(ValueError):
        ours.Options().buildArgumentString()


def filled(cls: type, fields: dict[str, Any]) -> Any:
    o = cls()
    for k, v in fields.items():
        setattr(o, k, v)
    return o


FIELD_CHOICES: dict[str, list[Any]] = {
    "help": [False, True],
    "verbose": [False, True],
    "logfile": [None, "/a.log", "/b.log"],
    "owner": [None, ("a", "b"), ("b", "a")],
    "mode": [None, 0o600, 0o640],
    "debug": [False, True],
    "uploadOnly": [False, True],
    "sourceDir": [None, "/src", "/src2"],
    "s3BucketUrl": [None, "s3://b/p", "s3://a"],
}


def test_equality_and_ordering_match() -> None:
    rng = random.Random(7)
    samples = [{k: rng.choice(v) for k, v in FIELD_CHOICES.items()} for _ in range(120)]
    pairs = [(filled(original.Options, s), filled(ours.Options, s)) for s in samples]
    for (oa, ua), (ob, ub) in itertools.combinations(pairs, 2):
        want = (oa == ob, oa != ob, oa < ob, oa <= ob, oa > ob, oa >= ob)
        got = (ua == ub, ua != ub, ua < ub, ua <= ub, ua > ub, ua >= ub)
        assert got == want, f"{oa!r} vs {ob!r}"
    assert (pairs[0][1] == None) is (pairs[0][0] == None)  # noqa: E711 - the None case on purpose


def test_round_trip_through_the_argument_list() -> None:
    o = ours.Options(
        argumentList=["-b", "-d", "-l", "/tmp/x.log", "-o", "u:g", "-m", "600", "-u", "/src", "s3://b/p"]
    )
    assert ours.Options(argumentList=o.buildArgumentList()) == o
    assert ours.Options(argumentString=o.buildArgumentString()) == o
