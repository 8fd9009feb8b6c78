//! Listing a prefix: ListObjectsV2, every page, keys URL-encoded on the wire and decoded here
//! (the Rust SDK does not do it), so any UTF-8 key round-trips, control characters included.
//!
//! A small prefix (one page) costs one request. A larger one is split along its "directories":
//! delimiter listings find the sub-prefixes a few levels down, which are then listed in
//! parallel. Each key is either an object at a level that was listed with the delimiter or
//! under exactly one sub-prefix, so the parts cover the prefix exactly once. Pages are handed
//! on as they arrive, so no part is held whole; a run puts them in key order itself
//! ([`list_sorted`]), as not every server lists in S3's order.

use aws_sdk_s3::types::{EncodingType, ObjectStorageClass};
use std::collections::HashMap;

use aws_sdk_s3::Client;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::error::{s3_error, Interrupted, OpError};
use crate::bucket_url::{show_object, BucketUrl};
use crate::run::sorted::{Keyed, Sorted, Sorter};
use crate::run::spill::{self, Record};
use crate::OUTPUT;

/// Listing requests in flight at once for a large prefix: a listing page (1000 keys) is
/// slow to produce, so a few in parallel cut the wait for a large bucket many times, while
/// staying a small share of what servers allow per prefix.
pub const LIST_CONCURRENCY: usize = 16;
/// Discovery stops splitting once it has this many sub-prefixes (enough to keep
/// [`LIST_CONCURRENCY`] busy; each split costs a delimiter request)...
const ENOUGH_PARTS: usize = 16;
/// ...or after this many levels below the prefix (deeper levels rarely spread keys further,
/// and each costs another round of requests before listing starts).
const MAX_DEPTH: usize = 3;

/// What the bucket holds for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteObject {
    pub size: u64,
    /// LastModified in nanoseconds since the Unix epoch.
    pub last_modified_ns: i64,
    /// The storage class when it is an archive one (`GLACIER`, `DEEP_ARCHIVE`), whose objects
    /// cannot be read before an S3 restore request; `None` for every readable class.
    pub archived: Option<&'static str>,
    /// [`etag_hash`] of the object's ETag (0: none listed): enough to tell that an object is
    /// the one a cached answer is about, in 8 bytes.
    pub etag: u64,
}

/// A 64-bit FNV-1a hash of an ETag, quotes removed (listings and upload answers quote it).
pub fn etag_hash(etag: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in etag.trim_matches('"').bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The listing of a prefix, keyed by the path relative to the prefix.
pub type Listing = HashMap<Box<str>, RemoteObject>;

type Objects = Vec<(String, RemoteObject)>;

/// Decodes a key sent with `encoding-type=url` (form encoding: '+' is a space, a real '+' is %2B).
pub fn decode_key(raw: &str) -> String {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

/// The name of an archive storage class (objects that need an S3 restore request before a
/// GET), as [`RemoteObject::archived`] carries it. GLACIER_IR is readable at once.
fn archive_class(class: Option<&ObjectStorageClass>) -> Option<&'static str> {
    match class? {
        ObjectStorageClass::Glacier => Some("GLACIER"),
        ObjectStorageClass::DeepArchive => Some("DEEP_ARCHIVE"),
        _ => None,
    }
}

struct Page {
    objects: Objects,
    prefixes: Vec<String>,
    next: Option<String>,
}

async fn page(
    client: &Client,
    bucket: &str,
    prefix: &str,
    delimiter: bool,
    token: Option<String>,
    cancel: &CancellationToken,
) -> Result<Page, OpError> {
    let mut req = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .encoding_type(EncodingType::Url)
        .set_continuation_token(token);
    if delimiter {
        req = req.delimiter("/");
    }
    let out = tokio::select! {
        _ = cancel.cancelled() => return Err(Interrupted.into()),
        r = req.send() => r.map_err(|e| s3_error("ListObjectsV2", &show_object(bucket, prefix), &e))?,
    };
    let objects = out
        .contents()
        .iter()
        .filter_map(|o| {
            let key = decode_key(o.key()?);
            let last_modified_ns = o
                .last_modified()
                .map(|t| {
                    t.secs()
                        .saturating_mul(1_000_000_000)
                        .saturating_add(i64::from(t.subsec_nanos()))
                })
                .unwrap_or(0);
            let size = o.size().unwrap_or(0).max(0) as u64;
            Some((
                key,
                RemoteObject {
                    size,
                    last_modified_ns,
                    archived: archive_class(o.storage_class()),
                    etag: o.e_tag().map_or(0, etag_hash),
                },
            ))
        })
        .collect();
    let prefixes = out
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix().map(decode_key))
        .collect();
    let next = if out.is_truncated() == Some(true) {
        out.next_continuation_token().map(str::to_string)
    } else {
        None
    };
    Ok(Page {
        objects,
        prefixes,
        next,
    })
}

/// One page's objects and sub-prefixes, as a listing task hands them on.
type Found = (Objects, Vec<String>);

/// Every page under `prefix`, sequentially, each sent on as it arrives (so a large part is
/// never held whole). Returns the number of pages.
async fn all_pages(
    client: Client,
    bucket: String,
    prefix: String,
    delimiter: bool,
    cancel: CancellationToken,
    tx: mpsc::Sender<Found>,
) -> Result<usize, OpError> {
    let (mut token, mut pages) = (None, 0);
    loop {
        let p = page(&client, &bucket, &prefix, delimiter, token, &cancel).await?;
        pages += 1;
        if tx.send((p.objects, p.prefixes)).await.is_err() {
            return Ok(pages);
        }
        match p.next {
            Some(t) => token = Some(t),
            None => return Ok(pages),
        }
    }
}

/// Runs `all_pages` for each prefix, at most [`LIST_CONCURRENCY`] at once, handing every
/// page to `take` as it comes (at most a few pages wait). Returns the number of pages.
async fn many(
    client: &Client,
    bucket: &str,
    prefixes: Vec<String>,
    delimiter: bool,
    cancel: &CancellationToken,
    mut take: impl FnMut(Objects, Vec<String>) -> std::io::Result<()>,
) -> Result<usize, OpError> {
    let local = |message: String| OpError::Local {
        path: bucket.to_string(),
        message,
    };
    let (tx, mut rx) = mpsc::channel::<Found>(LIST_CONCURRENCY);
    let mut todo = prefixes.into_iter();
    let mut tasks = JoinSet::new();
    let mut pages = 0;
    loop {
        while tasks.len() < LIST_CONCURRENCY {
            let Some(p) = todo.next() else { break };
            tasks.spawn(all_pages(
                client.clone(),
                bucket.to_string(),
                p,
                delimiter,
                cancel.clone(),
                tx.clone(),
            ));
        }
        if tasks.is_empty() {
            while let Ok((objects, subs)) = rx.try_recv() {
                take(objects, subs).map_err(|e| local(format!("cannot keep the listing: {e}")))?;
            }
            return Ok(pages);
        }
        tokio::select! {
            biased;
            Some((objects, subs)) = rx.recv() => {
                take(objects, subs).map_err(|e| local(format!("cannot keep the listing: {e}")))?;
            }
            Some(done) = tasks.join_next() => match done {
                Ok(Ok(n)) => pages += n,
                Ok(Err(e)) => return Err(e),
                Err(e) => return Err(local(format!("listing task failed: {e}"))),
            },
        }
    }
}

/// Lists every object under the prefix, handing each to `sink` by its name relative to the
/// prefix, in no particular order; a key may come twice (the first page is listed again when
/// the prefix is split). Returns how many objects were handed on.
pub async fn list_each(
    client: &Client,
    url: &BucketUrl,
    cancel: &CancellationToken,
    mut sink: impl FnMut(Box<str>, RemoteObject) -> std::io::Result<()>,
) -> Result<u64, OpError> {
    let mut pages = 1usize;
    let mut count = 0u64;
    let mut insert = |objects: Objects| -> std::io::Result<()> {
        for (key, obj) in objects {
            if let Some(rel) = url.relative(&key) {
                count += 1;
                sink(rel.into(), obj)?;
            }
        }
        Ok(())
    };
    let first = page(client, &url.bucket, &url.prefix, false, None, cancel).await?;
    let more = first.next.is_some();
    insert(first.objects).map_err(|e| OpError::Local {
        path: url.bucket.clone(),
        message: format!("cannot keep the listing: {e}"),
    })?;
    if more {
        // More than one page: find sub-prefixes with delimiter listings, level by level,
        // then list each sub-prefix in full, in parallel.
        let mut frontier = vec![url.prefix.clone()];
        let mut depth = 0;
        loop {
            let mut found = Vec::new();
            pages += many(
                client,
                &url.bucket,
                frontier,
                true,
                cancel,
                |objects, subs| {
                    found.extend(subs);
                    insert(objects)
                },
            )
            .await?;
            depth += 1;
            if found.is_empty() {
                break;
            }
            if found.len() >= ENOUGH_PARTS || depth >= MAX_DEPTH {
                let parts = found.len();
                pages += many(client, &url.bucket, found, false, cancel, |objects, _| {
                    insert(objects)
                })
                .await?;
                log::debug!(target: OUTPUT, "ListObjectsV2 {url}: listed in {parts} parallel parts");
                break;
            }
            frontier = found;
        }
    }
    log::debug!(target: OUTPUT, "ListObjectsV2 {url}: {count} objects in {pages} pages");
    Ok(count)
}

/// Lists every object under the prefix, keyed by the name relative to the prefix (the
/// Python API's lists; the runs use [`list_sorted`]).
pub async fn list(
    client: &Client,
    url: &BucketUrl,
    cancel: &CancellationToken,
) -> Result<Listing, OpError> {
    let mut listing = Listing::new();
    list_each(client, url, cancel, |rel, obj| {
        listing.insert(rel, obj);
        Ok(())
    })
    .await?;
    Ok(listing)
}

/// One listed object: its name relative to the prefix, and what the listing says of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub rel: Box<str>,
    pub obj: RemoteObject,
}

impl Record for Listed {
    fn encode(&self, out: &mut Vec<u8>) {
        spill::put_str(out, &self.rel);
        spill::put_u64(out, self.obj.size);
        spill::put_u64(out, self.obj.last_modified_ns as u64);
        spill::put_u64(out, self.obj.etag);
        out.push(match self.obj.archived {
            None => 0,
            Some("GLACIER") => 1,
            Some(_) => 2,
        });
    }

    fn decode(buf: &mut &[u8]) -> std::io::Result<Self> {
        let rel = spill::get_str(buf)?;
        let size = spill::get_u64(buf)?;
        let last_modified_ns = spill::get_u64(buf)? as i64;
        let etag = spill::get_u64(buf)?;
        let (&class, rest) = buf
            .split_first()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        *buf = rest;
        let archived = match class {
            0 => None,
            1 => Some("GLACIER"),
            _ => Some("DEEP_ARCHIVE"),
        };
        Ok(Listed {
            rel,
            obj: RemoteObject {
                size,
                last_modified_ns,
                archived,
                etag,
            },
        })
    }
}

impl Keyed for Listed {
    fn key(&self) -> &str {
        &self.rel
    }
}

/// Lists every object under the prefix in S3's byte order of keys, each once, in bounded
/// memory (see [`crate::run::sorted`]: the server's order is not trusted).
pub async fn list_sorted(
    client: &Client,
    url: &BucketUrl,
    cancel: &CancellationToken,
) -> Result<Sorted<Listed>, OpError> {
    let mut sorter = Sorter::new();
    list_each(client, url, cancel, |rel, obj| {
        sorter.push(Listed { rel, obj })
    })
    .await?;
    sorter.finish().map_err(|e| OpError::Local {
        path: url.bucket.clone(),
        message: format!("cannot keep the listing: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_keys_decode() {
        assert_eq!(decode_key("a+b%2Bc%25d%0Ae%C3%A9"), "a b+c%d\neé");
        assert_eq!(decode_key("x%2Fy"), "x/y");
    }
}
