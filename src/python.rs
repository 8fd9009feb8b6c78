//! The Python extension module `cback3_s3sync._core` (feature `python`). Thin: it
//! translates arguments and errors; the core decides.
