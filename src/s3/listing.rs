//! Listing a prefix: ListObjectsV2, every page, keys URL-encoded on the wire and decoded here
//! (the Rust SDK does not do it), so any UTF-8 key round-trips, control characters included.
//!
//! A small prefix (one page) costs one request. A larger one is split along its "directories":
//! delimiter listings find the sub-prefixes a few levels down, which are then listed in
//! parallel. Each key is either an object at a level that was listed with the delimiter or
//! under exactly one sub-prefix, so the parts cover the prefix exactly once. Keys come back
//! into a hash map, never merged by sort order.

use aws_sdk_s3::types::{EncodingType, ObjectStorageClass};
use aws_sdk_s3::Client;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::error::{s3_error, Interrupted, OpError};
use crate::bucket_url::{show_object, BucketUrl};
use crate::plan::{Listing, RemoteObject};
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
                    etag: o.e_tag().map_or(0, crate::plan::etag_hash),
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

/// Every page under `prefix`, sequentially.
async fn all_pages(
    client: Client,
    bucket: String,
    prefix: String,
    delimiter: bool,
    cancel: CancellationToken,
) -> Result<(Objects, Vec<String>, usize), OpError> {
    let (mut objects, mut prefixes, mut token, mut pages) = (Vec::new(), Vec::new(), None, 0);
    loop {
        let p = page(&client, &bucket, &prefix, delimiter, token, &cancel).await?;
        pages += 1;
        objects.extend(p.objects);
        prefixes.extend(p.prefixes);
        match p.next {
            Some(t) => token = Some(t),
            None => return Ok((objects, prefixes, pages)),
        }
    }
}

/// Runs `all_pages` for each prefix, at most [`LIST_CONCURRENCY`] at once.
async fn many(
    client: &Client,
    bucket: &str,
    prefixes: Vec<String>,
    delimiter: bool,
    cancel: &CancellationToken,
    mut take: impl FnMut(Objects, Vec<String>, usize),
) -> Result<(), OpError> {
    let mut todo = prefixes.into_iter();
    let mut tasks = JoinSet::new();
    loop {
        while tasks.len() < LIST_CONCURRENCY {
            let Some(p) = todo.next() else { break };
            tasks.spawn(all_pages(
                client.clone(),
                bucket.to_string(),
                p,
                delimiter,
                cancel.clone(),
            ));
        }
        let Some(done) = tasks.join_next().await else {
            return Ok(());
        };
        match done {
            Ok(Ok((objects, subs, pages))) => take(objects, subs, pages),
            Ok(Err(e)) => return Err(e),
            Err(e) => {
                return Err(OpError::Local {
                    path: bucket.to_string(),
                    message: format!("listing task failed: {e}"),
                })
            }
        }
    }
}

/// Lists every object under the prefix, keyed by the name relative to the prefix.
pub async fn list(
    client: &Client,
    url: &BucketUrl,
    cancel: &CancellationToken,
) -> Result<Listing, OpError> {
    let mut listing = Listing::new();
    let mut pages = 1usize;
    let insert = |listing: &mut Listing, objects: Objects| {
        for (key, obj) in objects {
            if let Some(rel) = url.relative(&key) {
                listing.insert(rel.into(), obj);
            }
        }
    };
    let first = page(client, &url.bucket, &url.prefix, false, None, cancel).await?;
    insert(&mut listing, first.objects);
    if first.next.is_some() {
        // More than one page: find sub-prefixes with delimiter listings, level by level,
        // then list each sub-prefix in full, in parallel. Keys of the first page come again;
        // inserting them twice is harmless.
        let mut frontier = vec![url.prefix.clone()];
        let mut depth = 0;
        loop {
            let mut found = Vec::new();
            many(
                client,
                &url.bucket,
                frontier,
                true,
                cancel,
                |objects, subs, n| {
                    insert(&mut listing, objects);
                    found.extend(subs);
                    pages += n;
                },
            )
            .await?;
            depth += 1;
            if found.is_empty() {
                break;
            }
            if found.len() >= ENOUGH_PARTS || depth >= MAX_DEPTH {
                let parts = found.len();
                many(
                    client,
                    &url.bucket,
                    found,
                    false,
                    cancel,
                    |objects, _, n| {
                        insert(&mut listing, objects);
                        pages += n;
                    },
                )
                .await?;
                log::debug!(target: OUTPUT, "ListObjectsV2 {url}: listed in {parts} parallel parts");
                break;
            }
            frontier = found;
        }
    }
    log::debug!(target: OUTPUT, "ListObjectsV2 {url}: {} objects in {pages} pages", listing.len());
    Ok(listing)
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
