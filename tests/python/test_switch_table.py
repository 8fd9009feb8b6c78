"""The shim is made from the core's switch table: its names are the table's, every entry
round-trips, and the options dict the core takes is exactly the table's fields."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any

import pytest

from cback3_s3sync import _core
from cback3_s3sync import amazons3 as shim

# The original's strings, word for word (CedarBackup3.tools.amazons3).
ORIGINAL_SHORT = "hVbql:o:m:OdsDvuw"
ORIGINAL_LONG = [
    "help", "version", "verbose", "quiet", "logfile=", "owner=", "mode=", "output", "debug",
    "stack", "diagnostics", "verifyOnly", "uploadOnly", "ignoreWarnings",
]  # fmt: skip

# A value every field of the kind accepts, as a Python caller would set it.
SAMPLES: dict[str, Any] = {
    "flag": True,
    "path": "/tmp/a b/café",
    "owner": ("backup", "adm"),
    "mode": 0o604,
    "count": 7,
    "rate": 4096,
    "choice": None,  # per switch, below
    "str": "alias/my key",
}
CHOICES = {"storageClass": "GLACIER_IR", "sse": "aws:kms"}


def test_the_shims_names_are_the_cores_table() -> None:
    assert shim.SHORT_SWITCHES == ORIGINAL_SHORT
    assert shim.LONG_SWITCHES == ORIGINAL_LONG
    fields = [f.name for f in _core.FIELDS]
    assert list(shim._FIELDS) == fields
    assert sorted(s.field for s in _core.SWITCHES) == sorted(set(fields) - {"sourceDir", "s3BucketUrl"})
    properties = [n for n, v in inspect.getmembers(shim.Options) if isinstance(v, property)]
    assert sorted(properties) == sorted(fields)
    assert sorted(shim.Options()._as_dict()) == sorted(fields)


# What a property of each kind gives back, as the stub and the shim declare it.
KIND_TYPES = {
    "flag": "bool",
    "path": "str | None",
    "owner": "tuple[str, str] | None",
    "mode": "int | None",
    "count": "int | None",
    "rate": "int | None",
    "choice": "str | None",
    "str": "str | None",
}


def test_the_typed_dict_has_every_field_with_its_kinds_type() -> None:
    stub = Path(_core.__file__).with_name("_core.pyi")
    tree = ast.parse(stub.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "OptionsDict")
    typed = {
        n.target.id: ast.unparse(n.annotation)
        for n in cls.body
        if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
    }
    assert typed == {f.name: KIND_TYPES[f.kind] for f in _core.FIELDS}


def test_the_declared_properties_have_their_kinds_type() -> None:
    """stubtest proves that every property the shim makes is declared; this, that each
    declaration's getter has its kind's type."""
    tree = ast.parse(Path(inspect.getfile(shim)).read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Options")
    block = next(n for n in cls.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
    getters = {
        f.name: ast.unparse(f.returns)
        for f in block.body
        if isinstance(f, ast.FunctionDef)
        and f.returns is not None
        and ast.unparse(f.decorator_list[0]) == "property"
    }
    assert getters == {f.name: KIND_TYPES[f.kind] for f in _core.FIELDS}


def test_the_table_reaches_python_as_named_records() -> None:
    dry = next(s for s in _core.SWITCHES if s.long == "dryRun")
    assert (dry.short, dry.value_name, dry.original, dry.kind) == (None, None, False, "flag")
    mode = next(s for s in _core.SWITCHES if s.field == "mode")
    assert (mode.long, mode.short, mode.value_name, mode.original) == ("mode", "m", "MODE", True)
    assert [(f.name, f.kind) for f in _core.FIELDS][:2] == [("help", "flag"), ("version", "flag")]
    with pytest.raises(AttributeError):
        dry.long = "wetRun"  # type: ignore[misc]  # frozen on purpose


@pytest.mark.parametrize("field", [f.name for f in _core.FIELDS])
def test_every_field_round_trips_through_the_argument_list(field: str) -> None:
    kind = shim._KINDS[field]
    value = CHOICES.get(field, SAMPLES[kind])
    if field == "s3BucketUrl":
        value = "s3://bucket/p"
    options = shim.Options()
    if field in ("sourceDir", "s3BucketUrl"):  # positionals count only in pairs
        options.sourceDir, options.s3BucketUrl = "src", "s3://b/q"
    setattr(options, field, value)
    assert getattr(options, field) == value
    back = shim.Options(argumentList=options.buildArgumentList(validate=False), validate=False)
    assert getattr(back, field) == value
    assert back == options


def test_the_core_refuses_a_missing_or_unknown_key() -> None:
    good: dict[str, Any] = dict(shim.Options()._as_dict())
    build: Any = _core.build_argument_list  # called with dicts that break its type on purpose
    with pytest.raises(ValueError, match='"dryRun" is missing'):
        build({k: v for k, v in good.items() if k != "dryRun"})
    with pytest.raises(ValueError, match="unknown key dryrun"):
        build({**good, "dryrun": True})
    with pytest.raises(ValueError, match="mode"):
        build({**good, "mode": "640"})


def test_our_switches_values_are_read_by_the_core() -> None:
    options = shim.Options()
    with pytest.raises(ValueError, match="--storageClass must be one of"):
        options.storageClass = "COLD"
    with pytest.raises(ValueError, match="--maxConcurrency needs a whole number from 1 to 1000"):
        options.maxConcurrency = 0
    options.maxConcurrency = "12"
    assert options.maxConcurrency == 12


def test_the_originals_setter_messages() -> None:
    options = shim.Options()
    for field, value, message in [
        ("logfile", "", "The logfile parameter must be a non-empty string."),
        ("owner", "root:adm", "Must specify user and group tuple for owner parameter."),
        ("owner", ("", "adm"), "User and group tuple values must be non-empty strings."),
        ("mode", -1, "Mode must be an octal integer >= 0. i.e. 644."),
        ("mode", [6], "Mode must be an octal integer >= 0, i.e. 644."),
        ("sourceDir", "", "The sourceDir parameter must be a non-empty string."),
        ("s3BucketUrl", "", "The s3BucketUrl parameter must be a non-empty string."),
    ]:
        with pytest.raises(ValueError) as raised:
            setattr(options, field, value)
        assert str(raised.value) == message, field


def test_the_setter_rules_and_the_ordering_are_python_code() -> None:
    """The rules about Python values are the shim's: the core has no setter or comparison."""
    assert not hasattr(_core, "check_field") and not hasattr(_core, "compare_options")
    assert shim._checked("mode", "644") == 0o644
    assert shim._checked("logfile", b"/tmp/x.log") == "/tmp/x.log"
    assert shim._checked("owner", ["u", "g"]) == ("u", "g")
    assert shim._checked("dryRun", "yes") is True
    assert shim._checked("maxBandwidth", "1KB/s") == 1024
    with pytest.raises(KeyError):
        shim._checked("nothing", 1)
    low, high = shim.Options(), shim.Options()
    low.mode, high.mode = 0o600, 0o640
    assert low._compare(high) == -1 and high._compare(low) == 1 and low._compare(low) == 0
    # Our own numbers compare as numbers, after every field of the original.
    low.maxDeletes, high.mode = 9, 0o600
    assert high._compare(low) == -1 and low > high
    high.maxDeletes = 10
    assert low < high
