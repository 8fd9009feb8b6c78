//! `s3://bucket[/prefix]` parsing and the mapping from a relative local path to an object key.

use std::fmt;

/// S3's limit on the length of an object key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// A parsed bucket URL. `prefix` is empty (bucket root) or ends with exactly one `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketUrl {
    pub bucket: String,
    pub prefix: String,
}

/// Why a bucket URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("bucket URL {0:?} does not start with s3://")]
    Scheme(String),
    #[error("bucket URL {0:?} has no bucket name")]
    EmptyBucket(String),
    #[error("bucket URL {url:?} has an invalid bucket name {bucket:?} (3 to 255 characters: letters, digits, '.', '-', '_'; first and last a letter or digit)")]
    InvalidBucket { url: String, bucket: String },
    #[error("bucket URL {0:?} has an empty, '.' or '..' path segment; some servers would store it under another prefix, so write the prefix without them")]
    BadSegment(String),
}

/// Bucket names as S3 and S3-compatible servers accept them. Stricter than needed for
/// new AWS buckets (lowercase, 3–63) would refuse legacy us-east-1 names, so we accept
/// the legacy rule; the server has the last word.
fn valid_bucket(name: &str) -> bool {
    let bytes = name.as_bytes();
    (3..=255).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
}

impl BucketUrl {
    /// Parses `s3://bucket`, `s3://bucket/`, `s3://bucket/p`, `s3://bucket/p/` (any depth).
    /// `p` and `p/` are the same prefix, as `aws s3 sync` treats them.
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| UrlError::Scheme(url.to_string()))?;
        let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(UrlError::EmptyBucket(url.to_string()));
        }
        if !valid_bucket(bucket) {
            return Err(UrlError::InvalidBucket {
                url: url.to_string(),
                bucket: bucket.to_string(),
            });
        }
        // One trailing '/' is allowed; anything else that a server could collapse or resolve
        // (`s3://b//p`, `s3://b/p//q`, `s3://b/p//`, `s3://b/p/../q`) is refused.
        let trimmed = path.strip_suffix('/').unwrap_or(path);
        if !path.is_empty()
            && trimmed
                .split('/')
                .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return Err(UrlError::BadSegment(url.to_string()));
        }
        let prefix = if trimmed.is_empty() {
            String::new()
        } else {
            format!("{trimmed}/")
        };
        Ok(BucketUrl {
            bucket: bucket.to_string(),
            prefix,
        })
    }

    /// The object key for a relative path (`/` separators): the prefix followed by `rel`.
    pub fn key(&self, rel: &str) -> String {
        format!("{}{rel}", self.prefix)
    }

    /// `s3://bucket/prefix/rel` as logs and messages show the object of a relative path,
    /// escaped for one log line.
    pub fn show(&self, rel: &str) -> String {
        show_object(&self.bucket, &self.key(rel))
    }

    /// `s3://bucket/key` as logs and messages show an object given by its full key.
    pub fn show_key(&self, key: &str) -> String {
        show_object(&self.bucket, key)
    }

    /// The relative path (with `/` separators) an object key stands for, if it lies under the prefix.
    pub fn relative<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(self.prefix.as_str())
    }
}

/// `s3://bucket/key` as logs and messages show an object, the key escaped for one log line;
/// for the S3 layer, which has a bucket and a key rather than a [`BucketUrl`].
pub fn show_object(bucket: &str, key: &str) -> String {
    format!(
        "s3://{bucket}/{}",
        crate::display::display_bytes(key.as_bytes())
    )
}

impl fmt::Display for BucketUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(url: &str) -> (String, String) {
        let u = BucketUrl::parse(url).unwrap();
        (u.bucket, u.prefix)
    }

    #[test]
    fn key_and_show_of_a_relative_path() {
        let u = BucketUrl::parse("s3://bkt/p").unwrap();
        assert_eq!(u.key("a/b.txt"), "p/a/b.txt");
        assert_eq!(u.show("a/b\nc"), "s3://bkt/p/a/b\\nc");
        assert_eq!(u.show_key("p/x"), "s3://bkt/p/x");
        let root = BucketUrl::parse("s3://bkt").unwrap();
        assert_eq!(root.key("f"), "f");
        assert_eq!(root.show("f"), "s3://bkt/f");
        assert_eq!(show_object("bkt", "k\x07"), "s3://bkt/k\\u{7}");
    }

    #[test]
    fn forms_of_the_same_prefix() {
        assert_eq!(p("s3://bkt"), ("bkt".into(), "".into()));
        assert_eq!(p("s3://bkt/"), ("bkt".into(), "".into()));
        assert_eq!(p("s3://bkt/p"), ("bkt".into(), "p/".into()));
        assert_eq!(p("s3://bkt/p/"), ("bkt".into(), "p/".into()));
        assert_eq!(p("s3://bkt/a/b/c"), ("bkt".into(), "a/b/c/".into()));
        assert_eq!(p("s3://my.bucket-1/x"), ("my.bucket-1".into(), "x/".into()));
    }

    #[test]
    fn malformed_urls() {
        assert!(matches!(
            BucketUrl::parse("bkt/p"),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(
            BucketUrl::parse("S3://bkt"),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(
            BucketUrl::parse("s3:/bkt"),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(
            BucketUrl::parse("s3://"),
            Err(UrlError::EmptyBucket(_))
        ));
        assert!(matches!(
            BucketUrl::parse("s3:///p"),
            Err(UrlError::EmptyBucket(_))
        ));
        for bad in [
            "s3://ab",
            "s3://-bkt",
            "s3://bkt-",
            "s3://b kt",
            "s3://bk?t/p",
            "s3://bküt",
        ] {
            assert!(
                matches!(BucketUrl::parse(bad), Err(UrlError::InvalidBucket { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn empty_and_dot_segments_are_refused() {
        for bad in [
            "s3://bkt//",
            "s3://bkt//p",
            "s3://bkt/p//q",
            "s3://bkt/p//",
            "s3://bkt/a/b/c//",
            "s3://bkt/./p",
            "s3://bkt/p/..",
            "s3://bkt/p/../q/",
        ] {
            assert_eq!(
                BucketUrl::parse(bad),
                Err(UrlError::BadSegment(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(p("s3://bkt/p.q/..r/"), ("bkt".into(), "p.q/..r/".into()));
    }

    #[test]
    fn keys_are_built_from_components() {
        let u = BucketUrl::parse("s3://bkt/myuser").unwrap();
        assert_eq!(
            u.key("docs/myuser-notes.txt"),
            "myuser/docs/myuser-notes.txt"
        );
        assert_eq!(u.key("a.txt"), "myuser/a.txt");
        let root = BucketUrl::parse("s3://bkt").unwrap();
        assert_eq!(root.key("d/e f+%#?&.txt"), "d/e f+%#?&.txt");
    }

    #[test]
    fn relative_strips_exactly_one_prefix() {
        let u = BucketUrl::parse("s3://bkt/p").unwrap();
        assert_eq!(u.relative("p/p/x"), Some("p/x"));
        assert_eq!(u.relative("p2/x"), None);
        let root = BucketUrl::parse("s3://bkt/").unwrap();
        assert_eq!(root.relative("p/x"), Some("p/x"));
    }
}
