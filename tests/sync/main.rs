//! The sync against the test server, one test binary (each binary links the AWS SDK again):
//! uploads, deletes, verify and the change rule (`sync`), our switches beyond the original
//! (`features`), files that change under the run (`integrity`), deletes, signals and stray
//! uploads, servers that reject the newer checksums, directory markers.
//! Where a new test goes: tests/README.md.

#[path = "../common/mod.rs"]
mod common;

mod checksum_fallback;
mod deletes_signals_strays;
mod directories;
mod features;
mod integrity;
mod streaming;
mod sync;
