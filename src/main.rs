//! The standalone `cback3-amazons3-sync` binary: hands argv to the library and exits with its status.

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let status = cback3_s3sync::cli::main(&args);
    cback3_s3sync::cli::end_leftover_children();
    std::process::exit(status.code());
}
