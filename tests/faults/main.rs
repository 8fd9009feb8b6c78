//! Faults and attacks, one test binary (each binary links the AWS SDK again): retries and
//! timeouts through tests/s3proxy.py, red-team classes, the seeded soak, secrets.
//! Where a new test goes: tests/README.md.

#[path = "../common/mod.rs"]
mod common;

mod faults;
mod redteam;
mod security;
mod soak;
