//! The command line: the original tool's switches with Python `getopt` semantics, plus our
//! own long-only switches.
//!
//! Parsing happens in two stages, as in the tool we replace:
//!
//! 1. [`getopt`]-style scanning: clustered short flags (`-bq`), values attached or separate
//!    (`-lFILE`, `-l FILE`, `--logfile=F`, `--logfile F`), long names abbreviated to any
//!    unique prefix, options ending at the first positional argument or at `--`. Errors carry
//!    the exact text Python's `getopt.GetoptError` would carry ([`OptionsError::Getopt`]).
//! 2. Applying the switches in a fixed order (the order of [`SWITCHES`]): for each switch the
//!    last occurrence of each spelling counts, and where both the short and the long spelling
//!    of a valued switch occur, the long one is applied last and so wins. Invalid values are
//!    [`OptionsError::Value`].
//!
//! Our own switches (those with `original: false` in [`SWITCHES`]) have long camelCase names
//! only and must be written in full: abbreviations are resolved against the original names
//! only, so that no command line the original accepts changes meaning.

mod build;
mod getopt;
mod model;
mod pyint;
mod switches;
mod usage;

pub use build::{build_argument_list, build_argument_string, split_argument_string};
pub use getopt::{getopt, parse, parse_unvalidated, Found};
pub use model::*;
pub use pyint::parse_octal_mode;
pub use switches::{
    fields, short_switches, Emit, Field, Kind, Slot, Switch, Value, POSITIONALS, SWITCHES,
};
pub use usage::{usage, usage_error, ABBREVIATIONS, ARGUMENTS, DESCRIPTION, EXAMPLE, EXIT_STATUS};
