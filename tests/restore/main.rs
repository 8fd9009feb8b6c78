//! `--restore` against the test server, one test binary (each binary links the AWS SDK again).
//! Where a new test goes: tests/README.md.

#[path = "../common/mod.rs"]
mod common;

mod restore;
mod stream;
