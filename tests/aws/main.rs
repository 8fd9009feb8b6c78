//! AWS configuration, one test binary (each binary links the AWS SDK again): the profile's
//! `s3 =` settings, HTTPS and CA bundles, the effective configuration, the cron environment.
//! Where a new test goes: tests/README.md.

#[path = "../common/mod.rs"]
mod common;

mod aws_s3_settings;
mod cron;
mod user_setup;
