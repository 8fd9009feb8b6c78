//! The AWS shared configuration files (`~/.aws/config` or `AWS_CONFIG_FILE`, and
//! `~/.aws/credentials` or `AWS_SHARED_CREDENTIALS_FILE`), checked before a run uses them.
//!
//! The SDK drops a file it cannot use without a word a user would see: a file that does not
//! parse, or is not UTF-8 text, counts as empty, and so does one it cannot read. A run would
//! then go on with defaults nobody chose (another region, no `s3` settings, other
//! credentials). As the AWS CLI does, a file that does not parse fails the run ("Unable to
//! parse config file: PATH"); one that cannot be read (a directory, no permission), or that
//! `AWS_CONFIG_FILE` / `AWS_SHARED_CREDENTIALS_FILE` names but does not exist, is one WARNING
//! naming it, and the run goes on without it (the AWS CLI goes on silently).

// aws-config names these through deprecated aliases of aws-runtime's types; aws-runtime is
// not a direct dependency, and the aliases are the same types.
#![allow(deprecated)]

use aws_config::profile::profile_file::{ProfileFileKind, ProfileFiles};
use aws_types::os_shim_internal::{Env, Fs};

use super::error::one_line;

/// What the check found: warnings for files that could not be read. A file that does not
/// parse is the `Err` of [`check`].
pub type Warnings = Vec<String>;

/// The two files, as the SDK finds them: the variable if set, else the file under `~/.aws`;
/// and whether the variable named it.
fn files() -> [(ProfileFileKind, &'static str, std::path::PathBuf, bool); 2] {
    let path = |var: &str, default: &str| {
        let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
        match std::env::var(var) {
            Ok(p) => match (p.strip_prefix("~/"), &home) {
                (Some(rest), Some(h)) => h.join(rest),
                _ => p.into(),
            },
            Err(_) => home.unwrap_or_default().join(".aws").join(default),
        }
    };
    [
        (
            ProfileFileKind::Config,
            "AWS_CONFIG_FILE",
            path("AWS_CONFIG_FILE", "config"),
            std::env::var_os("AWS_CONFIG_FILE").is_some(),
        ),
        (
            ProfileFileKind::Credentials,
            "AWS_SHARED_CREDENTIALS_FILE",
            path("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
            std::env::var_os("AWS_SHARED_CREDENTIALS_FILE").is_some(),
        ),
    ]
}

/// Checks both files. `Err`: one line naming the file that does not parse (the run must
/// not go on); `Ok`: one warning per file that exists but cannot be read.
pub async fn check() -> Result<Warnings, String> {
    let mut warnings = Vec::new();
    for (kind, var, path, named) in files() {
        let what = match kind {
            ProfileFileKind::Config => "AWS config file",
            _ => "AWS credentials file",
        };
        let shown = path.display();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            // No file is no settings, as for the AWS CLI; but a file the variable names is
            // meant to be there (a typo in a crontab would otherwise go unseen).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if named && !path.as_os_str().is_empty() {
                    warnings.push(format!(
                        "The {what} {shown} named by {var} does not exist: no setting is read from it."
                    ));
                }
                continue;
            }
            Err(_) if path.is_dir() => {
                warnings.push(format!(
                    "The {what} {shown} (see {var}) is a directory: no setting is read from it."
                ));
                continue;
            }
            Err(e) => {
                warnings.push(format!(
                    "Cannot read the {what} {shown} (see {var}): {e}; no setting is read from it."
                ));
                continue;
            }
        };
        let text = String::from_utf8(bytes).map_err(|e| {
            format!(
                "Unable to parse config file: {shown} (not UTF-8 text at byte {})",
                e.utf8_error().valid_up_to()
            )
        })?;
        parse_error(kind, text).await.map_or(Ok(()), |why| {
            Err(format!("Unable to parse config file: {shown} ({why})"))
        })?;
    }
    Ok(warnings)
}

/// The SDK's parser's objection to `text`, as "line N: what" (None: it parses).
async fn parse_error(kind: ProfileFileKind, text: String) -> Option<String> {
    let files = ProfileFiles::builder().with_contents(kind, text).build();
    let err = aws_config::profile::load(&Fs::real(), &Env::real(), &files, None)
        .await
        .err()?;
    // The parse error itself is the load error's source.
    let full = match std::error::Error::source(&err) {
        Some(e) => e.to_string(),
        None => err.to_string(),
    };
    // "error parsing <path> on line 3:\n  Profile definition must end with ']'"
    let full = one_line(&full);
    Some(match full.split_once(" on line ") {
        Some((_, rest)) => format!("line {rest}"),
        None => full,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_sdks_parse_errors_name_the_line() {
        let cases = [
            (
                "[profile x\nregion = a\n",
                Some("line 1: Profile definition must end with ']'"),
            ),
            (
                "region = a\n",
                Some("line 1: Expected a profile definition"),
            ),
            ("[default]\ns3 =\n  not a setting\n", Some("line 3:")),
            ("[default]\nregion\n", Some("line 2:")),
            (
                "[default]\nregion = a\ns3 =\n  max_bandwidth = 1MB/s\n",
                None,
            ),
            ("# only a comment\n", None),
        ];
        for (text, want) in cases {
            let got = parse_error(ProfileFileKind::Config, text.into()).await;
            match want {
                None => assert_eq!(got, None, "{text:?}"),
                Some(w) => {
                    let g = got.unwrap_or_else(|| panic!("{text:?} parsed"));
                    assert!(g.starts_with(w), "{text:?}: {g}");
                }
            }
        }
    }
}
