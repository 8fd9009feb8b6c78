//! Content checksums of local files, in the forms S3 stores them.
//!
//! Uploads carry a full-object CRC64NVME (the AWS default since 2025, and the one checksum S3
//! can keep for a whole multipart object). Objects written by other tools may instead carry a
//! CRC32 or CRC32C (botocore and the AWS SDKs add one by default), or only an ETag, which is
//! the MD5 of the content for a single-part object without SSE-KMS. [`Method`] names the one
//! comparison chosen for an object; [`digest_file`] computes it by streaming the file through
//! a fixed buffer, so memory per file is bounded whatever the file's size.

use std::io::Read;
use std::path::Path;

use crc_fast::CrcAlgorithm;
use md5::Digest as _;

/// Buffer for streaming a file through a hash: large enough for few reads, small enough to
/// run one per core.
const READ_BUFFER: usize = 1024 * 1024;

/// How one object's content is compared with the local file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// The object's full-object CRC64NVME (base64, as S3 sends it).
    Crc64Nvme(String),
    /// A full-object CRC32 (base64).
    Crc32(String),
    /// A full-object CRC32C (base64).
    Crc32c(String),
    /// The ETag of a single-part object, which is the hex MD5 of its content.
    Md5(String),
}

impl Method {
    pub fn name(&self) -> &'static str {
        match self {
            Method::Crc64Nvme(_) => "CRC64NVME",
            Method::Crc32(_) => "CRC32",
            Method::Crc32c(_) => "CRC32C",
            Method::Md5(_) => "MD5 (ETag)",
        }
    }

    /// The value the object carries.
    pub fn expected(&self) -> &str {
        match self {
            Method::Crc64Nvme(v) | Method::Crc32(v) | Method::Crc32c(v) | Method::Md5(v) => v,
        }
    }
}

/// What HeadObject told about an object's content, in the SDK's terms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredChecksums {
    pub crc64nvme: Option<String>,
    pub crc32: Option<String>,
    pub crc32c: Option<String>,
    /// `FULL_OBJECT` or `COMPOSITE` when the server says; absent for single-part objects.
    pub checksum_type: Option<String>,
    pub etag: Option<String>,
    /// The server-side encryption of the object (`aws:kms` ETags are not MD5s).
    pub sse: Option<String>,
}

/// A composite checksum (of the parts' checksums) ends in `-N` and says nothing about the
/// whole content.
fn full_object(v: &Option<String>, ty: &Option<String>) -> Option<String> {
    let v = v.as_ref()?;
    if v.contains('-') || ty.as_deref() == Some("COMPOSITE") {
        return None;
    }
    Some(v.clone())
}

/// Is the object a multipart upload (an ETag of the form `"<md5 of md5s>-<parts>"`)?
fn multipart(stored: &StoredChecksums) -> bool {
    stored
        .etag
        .as_deref()
        .is_some_and(|e| e.trim_matches('"').contains('-'))
}

/// A CRC32 or CRC32C of a multipart object is a checksum of the whole content only when the
/// server says FULL_OBJECT: otherwise it may be a checksum of the parts' checksums, which some
/// servers (moto 5.2.5) send without the `-N` suffix and without a type.
fn full_object_crc32(stored: &StoredChecksums, v: &Option<String>) -> Option<String> {
    if multipart(stored) && stored.checksum_type.as_deref() != Some("FULL_OBJECT") {
        return None;
    }
    full_object(v, &stored.checksum_type)
}

/// The best comparison an object allows, or `None` when its content cannot be checked
/// without downloading it (multipart objects of other tools, SSE-KMS/SSE-C without checksum).
pub fn choose(stored: &StoredChecksums) -> Option<Method> {
    if let Some(v) = full_object(&stored.crc64nvme, &stored.checksum_type) {
        return Some(Method::Crc64Nvme(v));
    }
    if let Some(v) = full_object_crc32(stored, &stored.crc32) {
        return Some(Method::Crc32(v));
    }
    if let Some(v) = full_object_crc32(stored, &stored.crc32c) {
        return Some(Method::Crc32c(v));
    }
    let etag = stored.etag.as_deref()?.trim_matches('"');
    let kms = stored
        .sse
        .as_deref()
        .is_some_and(|s| s.starts_with("aws:kms"));
    if !kms && etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Some(Method::Md5(etag.to_ascii_lowercase()));
    }
    None
}

/// Base64 of a CRC, big-endian over its width, as S3 writes checksums.
pub fn crc_base64(value: u64, bytes: usize) -> String {
    aws_smithy_types::base64::encode(&value.to_be_bytes()[8 - bytes..])
}

/// CRC64NVME of `data`.
pub fn crc64nvme(data: &[u8]) -> u64 {
    crc_fast::checksum(CrcAlgorithm::Crc64Nvme, data)
}

/// Reads a base64 CRC64NVME as S3 sends it.
pub fn parse_crc64nvme(b64: &str) -> Option<u64> {
    let raw = aws_smithy_types::base64::decode(b64).ok()?;
    Some(u64::from_be_bytes(raw.try_into().ok()?))
}

/// The CRC64NVME of two pieces from the CRCs of each (the second `len_b` bytes long): how the
/// full-object value of a multipart upload follows from its parts without reading them again.
pub fn crc64nvme_combine(a: u64, b: u64, len_b: u64) -> u64 {
    crc_fast::checksum_combine(CrcAlgorithm::Crc64Nvme, a, b, len_b)
}

/// A running hash of the kind a [`Method`] compares, fed piece by piece (a download writes
/// and hashes each chunk as it arrives).
pub struct Hasher(H);

// One of these lives on the stack per file; its size does not matter.
#[allow(clippy::large_enum_variant)]
enum H {
    Crc(crc_fast::Digest, usize),
    Md5(md5::Md5),
}

impl Hasher {
    pub fn new(method: &Method) -> Self {
        Hasher(match method {
            Method::Crc64Nvme(_) => H::Crc(crc_fast::Digest::new(CrcAlgorithm::Crc64Nvme), 8),
            Method::Crc32(_) => H::Crc(crc_fast::Digest::new(CrcAlgorithm::Crc32IsoHdlc), 4),
            Method::Crc32c(_) => H::Crc(crc_fast::Digest::new(CrcAlgorithm::Crc32Iscsi), 4),
            Method::Md5(_) => H::Md5(md5::Md5::default()),
        })
    }

    pub fn update(&mut self, data: &[u8]) {
        match &mut self.0 {
            H::Crc(d, _) => d.update(data),
            H::Md5(d) => d.update(data),
        }
    }

    /// The CRC itself (not encoded), for [`combine_crcs`]; `None` for MD5.
    pub fn finish_crc(self) -> Option<u64> {
        match self.0 {
            H::Crc(d, _) => Some(d.finalize()),
            H::Md5(_) => None,
        }
    }

    /// The value in the same form as [`Method::expected`].
    pub fn finish(self) -> String {
        match self.0 {
            H::Crc(d, width) => crc_base64(d.finalize(), width),
            H::Md5(d) => d
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
        }
    }
}

/// The whole content's value, in the form of [`Method::expected`], from the CRCs of its
/// consecutive pieces (CRC, length), as [`Hasher::finish_crc`] gives them: how pieces hashed
/// in parallel (ranged downloads) give the whole without reading it again. `None` for MD5.
pub fn combine_crcs(method: &Method, pieces: &[(u64, u64)]) -> Option<String> {
    let (algorithm, width) = match method {
        Method::Crc64Nvme(_) => (CrcAlgorithm::Crc64Nvme, 8),
        Method::Crc32(_) => (CrcAlgorithm::Crc32IsoHdlc, 4),
        Method::Crc32c(_) => (CrcAlgorithm::Crc32Iscsi, 4),
        Method::Md5(_) => return None,
    };
    let mut whole: Option<u64> = None;
    for &(crc, len) in pieces {
        whole = Some(match whole {
            None => crc,
            Some(w) => crc_fast::checksum_combine(algorithm, w, crc, len),
        });
    }
    let empty = || Hasher::new(method).finish_crc().unwrap_or(0);
    Some(crc_base64(whole.unwrap_or_else(empty), width))
}

/// Streams `reader` through the hash that `method` needs, with a fixed buffer. Blocking.
pub fn digest_reader(mut reader: impl Read, method: &Method) -> std::io::Result<String> {
    let mut h = Hasher::new(method);
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
    }
    Ok(h.finish())
}

/// Streams the file at `path` through the hash that `method` needs and returns the value in
/// the same form as [`Method::expected`]. Blocking; run it off the async workers.
///
/// Opened without blocking and refused unless it is a regular file: a FIFO put in the place
/// of a walked file would block `open` for ever, and a device (`/dev/zero` behind a symlink
/// retargeted after the walk) would be read for ever.
pub fn digest_file(path: &Path, method: &Method) -> std::io::Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "it is no longer a regular file (a FIFO, device, socket or directory is in its place)",
        ));
    }
    digest_reader(file, method)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(data: &[u8]) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), data).unwrap();
        f
    }

    #[test]
    fn known_values() {
        // Values S3 (and SeaweedFS) report for "hello world".
        let f = file(b"hello world");
        let cases = [
            (Method::Crc64Nvme(String::new()), "jSnVw/bqjr4="),
            (Method::Crc32(String::new()), "DUoRhQ=="),
            (
                Method::Md5(String::new()),
                "5eb63bbbe01eeed093cb22bb8f5acdc3",
            ),
        ];
        for (m, want) in cases {
            assert_eq!(digest_file(f.path(), &m).unwrap(), want, "{m:?}");
        }
        // CRC-32C check value.
        let f = file(b"123456789");
        assert_eq!(
            digest_file(f.path(), &Method::Crc32c(String::new())).unwrap(),
            crc_base64(0xe3069283, 4)
        );
    }

    #[test]
    fn combined_parts_equal_the_whole() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (a, b) = data.split_at(1_234_567);
        let whole = crc64nvme_combine(crc64nvme(a), crc64nvme(b), b.len() as u64);
        assert_eq!(whole, crc64nvme(&data));
        let b64 = crc_base64(whole, 8);
        assert_eq!(parse_crc64nvme(&b64), Some(whole));
        let f = file(&data);
        assert_eq!(
            digest_file(f.path(), &Method::Crc64Nvme(String::new())).unwrap(),
            b64
        );
    }

    #[test]
    fn pieces_combine_to_the_whole_for_every_crc() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 13 % 251) as u8).collect();
        for m in [
            Method::Crc64Nvme(String::new()),
            Method::Crc32(String::new()),
            Method::Crc32c(String::new()),
        ] {
            let pieces: Vec<(u64, u64)> = data
                .chunks(30_000)
                .map(|c| {
                    let mut h = Hasher::new(&m);
                    h.update(c);
                    (h.finish_crc().unwrap(), c.len() as u64)
                })
                .collect();
            let mut whole = Hasher::new(&m);
            whole.update(&data);
            assert_eq!(combine_crcs(&m, &pieces), Some(whole.finish()), "{m:?}");
        }
        assert_eq!(combine_crcs(&Method::Md5(String::new()), &[]), None);
    }

    #[test]
    fn choice_of_method() {
        let s = |crc64: Option<&str>, crc32: Option<&str>, ty: Option<&str>, etag: &str| {
            StoredChecksums {
                crc64nvme: crc64.map(String::from),
                crc32: crc32.map(String::from),
                checksum_type: ty.map(String::from),
                etag: Some(etag.into()),
                ..Default::default()
            }
        };
        let md5 = "\"5EB63BBBE01EEED093CB22BB8F5ACDC3\"";
        assert_eq!(
            choose(&s(Some("x="), Some("y="), None, md5)),
            Some(Method::Crc64Nvme("x=".into()))
        );
        assert_eq!(
            choose(&s(None, Some("y="), None, md5)),
            Some(Method::Crc32("y=".into()))
        );
        assert_eq!(
            choose(&s(None, Some("y=-3"), Some("COMPOSITE"), md5)),
            Some(Method::Md5("5eb63bbbe01eeed093cb22bb8f5acdc3".into()))
        );
        assert_eq!(choose(&s(None, None, None, "\"abc-2\"")), None);
        // A multipart object's CRC32 counts only when the server says it is of the whole
        // content (moto sends a composite value without "-N" and without a type).
        assert_eq!(choose(&s(None, Some("y="), None, "\"abc-2\"")), None);
        assert_eq!(
            choose(&s(None, Some("y="), Some("FULL_OBJECT"), "\"abc-2\"")),
            Some(Method::Crc32("y=".into()))
        );
        assert_eq!(
            choose(&s(Some("x="), None, None, "\"abc-2\"")),
            Some(Method::Crc64Nvme("x=".into()))
        );
        let mut kms = s(None, None, None, md5);
        kms.sse = Some("aws:kms".into());
        assert_eq!(choose(&kms), None);
    }
}
