//! The command line, one test binary (each binary links the AWS SDK again): parsing (table
//! tests, and against the original's `Options`), the logfile and screen, bad input, and the
//! layers of src/ (`module_graph`).
//! Where a new test goes: tests/README.md.

#[path = "../common/mod.rs"]
mod common;

mod bad_input;
mod cli_options;
mod getopt_differential;
mod logging;
mod module_graph;
