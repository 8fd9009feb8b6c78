//! Deletes: DeleteObjects in batches (single DeleteObject for keys XML cannot carry), and
//! after an interruption, finding out what an unanswered request deleted.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use aws_sdk_s3::Client;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::error::{answer_cause, s3_error, S3Error};
use crate::bucket_url::show_object;
use crate::report::{Cause, S3Kind};
use crate::OUTPUT;

/// Bound on one DeleteObject (on top of the SDK's per-attempt timeouts, over its retries):
/// a removal that does not answer by then is reported as failed rather than holding the run.
const DELETE_OBJECT_TIMEOUT: Duration = Duration::from_secs(60);

/// DeleteObject requests in flight at once when checking an unanswered batch: enough to
/// check a full batch of 1000 keys within [`DELETE_CHECK_TIME`], few enough not to flood
/// an endpoint that has just been slow to answer.
const CHECK_CONCURRENCY: usize = 32;

/// Deletes one object (a copy that may be torn, so that the next run sees it missing).
pub async fn delete_object(client: &Client, bucket: &str, key: &str) -> Result<(), S3Error> {
    let req = client.delete_object().bucket(bucket).key(key).send();
    match tokio::time::timeout(DELETE_OBJECT_TIMEOUT, req).await {
        Ok(Ok(_)) => {
            log::debug!(target: OUTPUT, "DeleteObject {}", show_object(bucket, key));
            Ok(())
        }
        Ok(Err(e)) => Err(s3_error("DeleteObject", key, &e)),
        Err(_) => Err(S3Error {
            op: "DeleteObject",
            target: key.to_string(),
            detail: "timed out".into(),
            code: None,
            cause: Cause::S3(S3Kind::NoAnswer),
        }),
    }
}

/// DeleteObjects takes at most this many keys per request (S3's limit): the fewest requests.
const DELETE_BATCH: usize = 1000;

/// How long an in-flight delete request may still take to answer once the run is interrupted.
/// Without its answer the run cannot know what it deleted, so it waits a little, then checks.
pub const DELETE_GRACE: Duration = Duration::from_secs(5);

/// Bound on checking, after an interruption, which keys of an unanswered request are gone:
/// the check is best effort, and an interrupted run must still end promptly.
const DELETE_CHECK_TIME: Duration = Duration::from_secs(10);

/// What deleting a list of keys did.
#[derive(Debug, Default)]
pub struct Deleted {
    /// Keys known to be gone (answered, or checked after an unanswered request).
    pub deleted: usize,
    /// Keys that could not be deleted, each with the key as its target.
    pub failures: Vec<S3Error>,
    /// Cancelled before every key was tried.
    pub interrupted: bool,
    /// Keys whose request got no answer before the interruption and whose state the check
    /// could not establish.
    pub unknown: Vec<String>,
}

/// Can `key` travel in a DeleteObjects XML body and arrive unchanged? XML 1.0 has no way to
/// carry U+0001..U+0008, U+000B, U+000C, U+000E..U+001F, U+FFFE and U+FFFF (even as character
/// references: the server answers MalformedXML for the whole batch). CR is valid XML but parsers
/// turn CR and CRLF in text into LF. The SDK sends it as `&#xD;`, which survives that (SeaweedFS
/// deletes such keys in a batch), but a server that got it wrong would delete a key that does not
/// exist, answer success in quiet mode, and leave ours for ever: CR goes one by one as well.
pub fn fits_delete_xml(key: &str) -> bool {
    key.chars().all(|c| match c {
        '\t' | '\n' => true,
        '\r' | '\u{FFFE}' | '\u{FFFF}' => false,
        c => c >= ' ',
    })
}

/// Waits for an S3 request; once `cancel` fires it gets [`DELETE_GRACE`] more to answer.
/// `None`: interrupted without an answer (the request may or may not have been carried out).
pub(super) async fn answer<F: std::future::Future>(
    request: F,
    cancel: &CancellationToken,
) -> Option<F::Output> {
    tokio::pin!(request);
    tokio::select! {
        r = &mut request => return Some(r),
        _ = cancel.cancelled() => {}
    }
    tokio::time::timeout(DELETE_GRACE, request).await.ok()
}

/// Deletes objects by key: keys that XML cannot carry one by one with DeleteObject (the key is
/// in the URL), the rest with DeleteObjects in batches of [`DELETE_BATCH`]. On cancellation no
/// new request starts, and what the last one did is established (its answer, or a check).
pub async fn delete(
    client: &Client,
    bucket: &str,
    keys: &[String],
    cancel: &CancellationToken,
) -> Deleted {
    let mut out = Deleted::default();
    let (singles, batched): (Vec<&String>, Vec<&String>) =
        keys.iter().partition(|k| !fits_delete_xml(k));
    for key in singles {
        if cancel.is_cancelled() {
            break;
        }
        delete_one(client, bucket, key, cancel, &mut out).await;
    }
    for batch in batched.chunks(DELETE_BATCH) {
        if cancel.is_cancelled() {
            break;
        }
        delete_batch(client, bucket, batch, cancel, &mut out).await;
    }
    out.interrupted =
        cancel.is_cancelled() && out.deleted + out.failures.len() + out.unknown.len() < keys.len();
    out
}

/// One key with DeleteObject.
async fn delete_one(
    client: &Client,
    bucket: &str,
    key: &str,
    cancel: &CancellationToken,
    out: &mut Deleted,
) {
    let request = client.delete_object().bucket(bucket).key(key).send();
    match answer(request, cancel).await {
        Some(Ok(_)) => {
            out.deleted += 1;
            log::debug!(target: OUTPUT, "DeleteObject {}", show_object(bucket, key));
        }
        Some(Err(e)) => out.failures.push(s3_error("DeleteObject", key, &e)),
        None => check_unanswered(client, bucket, &[key], out).await,
    }
}

/// One DeleteObjects request. Per-key errors in the answer stay per key; a request the server
/// rejects as a whole (4xx: MalformedXML from a stricter server, say) is retried key by key,
/// so one bad key never blocks the rest; server and transport failures (already retried by
/// the SDK) fail each key of the batch.
async fn delete_batch(
    client: &Client,
    bucket: &str,
    batch: &[&String],
    cancel: &CancellationToken,
    out: &mut Deleted,
) {
    let objects: Vec<ObjectIdentifier> = batch
        .iter()
        .filter_map(|k| ObjectIdentifier::builder().key(k.as_str()).build().ok())
        .collect();
    let request = Delete::builder()
        .set_objects(Some(objects))
        .quiet(true)
        .build()
        .expect("objects are set");
    let sent = client
        .delete_objects()
        .bucket(bucket)
        .delete(request)
        .send();
    match answer(sent, cancel).await {
        Some(Ok(answer)) => {
            let errors = answer.errors();
            for e in errors {
                out.failures.push(S3Error {
                    op: "DeleteObjects",
                    target: e.key().unwrap_or_default().to_string(),
                    detail: format!(
                        "{}: {}",
                        e.code().unwrap_or_default(),
                        e.message().unwrap_or_default()
                    ),
                    code: e.code().map(str::to_string),
                    cause: answer_cause(e.code()),
                });
            }
            out.deleted += batch.len() - errors.len();
            for k in batch {
                log::debug!(target: OUTPUT, "DeleteObjects {}", show_object(bucket, k));
            }
        }
        Some(Err(e)) if rejected_as_a_whole(&e) => {
            let why = s3_error("DeleteObjects", bucket, &e);
            log::warn!(target: crate::FLOW, "DeleteObjects of {} keys was refused ({}); deleting them one by one.", batch.len(), why.detail);
            for key in batch {
                if cancel.is_cancelled() {
                    break;
                }
                delete_one(client, bucket, key, cancel, out).await;
            }
        }
        Some(Err(e)) => {
            for key in batch {
                out.failures.push(s3_error("DeleteObjects", key, &e));
            }
        }
        None => check_unanswered(client, bucket, batch, out).await,
    }
}

/// Did the server refuse the request itself (a 4xx answer), rather than fail to carry it out?
fn rejected_as_a_whole<E>(e: &SdkError<E>) -> bool {
    matches!(e, SdkError::ServiceError(s) if s.raw().status().is_client_error())
}

/// After an interruption cut a delete request off unanswered: which of its keys are gone?
/// HeadObject each (bounded in time); those that cannot be checked are reported unknown.
async fn check_unanswered(
    client: &Client,
    bucket: &str,
    keys: &[impl AsRef<str>],
    out: &mut Deleted,
) {
    log::warn!(target: crate::FLOW, "A delete request for {} keys got no answer before the interruption; checking which are gone.", keys.len());
    let limit = Arc::new(Semaphore::new(CHECK_CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    for key in keys {
        let (client, bucket, key, limit) = (
            client.clone(),
            bucket.to_string(),
            key.as_ref().to_string(),
            limit.clone(),
        );
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let head = client.head_object().bucket(&bucket).key(&key).send().await;
            let gone = match head {
                Ok(_) => Some(false),
                Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Some(true),
                Err(_) => None,
            };
            (key, gone)
        });
    }
    let mut pending: std::collections::HashSet<String> =
        keys.iter().map(|k| k.as_ref().to_string()).collect();
    let _ = tokio::time::timeout(DELETE_CHECK_TIME, async {
        while let Some(done) = tasks.join_next().await {
            let Ok((key, gone)) = done else { continue };
            match gone {
                Some(true) => {
                    out.deleted += 1;
                    pending.remove(&key);
                }
                Some(false) => {
                    pending.remove(&key);
                }
                None => {}
            }
        }
    })
    .await;
    tasks.abort_all();
    out.unknown.extend(pending);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_xml_cannot_carry_are_not_batched() {
        for k in [
            "a\u{1}", "\u{8}", "\u{b}", "\u{c}", "\u{e}", "\u{1f}", "\u{fffe}", "\u{ffff}", "a\rb",
        ] {
            assert!(!fits_delete_xml(k), "{k:?}");
        }
        for k in [
            "plain",
            "tab\there",
            "lf\nhere",
            "caf\u{e9}",
            "\u{85}\u{2028}",
            "\u{fffd}",
        ] {
            assert!(fits_delete_xml(k), "{k:?}");
        }
    }
}
