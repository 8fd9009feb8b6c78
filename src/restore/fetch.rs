//! Downloads into the temporary file: one GetObject (checksum mode on) for a small object,
//! concurrent ranged GETs written in place for a large one, paced by the bandwidth limit and
//! hashed as the bytes arrive; and the settings that shape them.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use aws_sdk_s3::types::ChecksumMode;
use aws_sdk_s3::Client;
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinSet;

use super::job::{io_failed, Ctx, Done};
use super::place::Temp;
use crate::checksum::{self, Hasher, Method, StoredChecksums};
use crate::display::display_bytes;
use crate::metadata::Recorded;
use crate::options::Options;
use crate::report::{Cause, S3Kind};
use crate::s3::settings::{rate_limit, show_rate, Bandwidth, Multipart, ProfileS3};
use crate::s3::{self, s3_error, OpError};
use crate::{FLOW, OUTPUT};

/// Ranged GETs of one large object in flight at once (each also holds a `--maxConcurrency`
/// permit). Each open range keeps a connection's read buffer (up to about 400 KiB) full; on
/// the benchmark's 1 GiB restore 8 ranges were faster than 16 or 64 and used half the memory
/// of 64 (BENCHMARKS.md).
const RANGES_PER_OBJECT: usize = 8;

/// What a HeadObject or GetObject told about the object.
pub struct ObjectInfo {
    pub size: u64,
    pub stored: StoredChecksums,
    pub recorded: Recorded,
    /// Recorded values that cannot be used (one WARNING for the object).
    pub unusable: Vec<String>,
    pub etag: Option<String>,
}

pub async fn head(
    client: &Client,
    bucket: &str,
    key: &str,
) -> Result<(ObjectInfo, Option<String>), OpError> {
    let h = s3::head_object(client, bucket, key).await?;
    let (recorded, unusable) = Recorded::from_metadata(h.metadata());
    let info = ObjectInfo {
        size: h.content_length().unwrap_or(0).max(0) as u64,
        stored: s3::stored_checksums(&h),
        recorded,
        unusable,
        etag: h.e_tag().map(str::to_string),
    };
    Ok((info, h.restore().map(str::to_string)))
}

/// How the restore moves data: the settings that shape the sync's uploads, applied to its
/// downloads (`--maxConcurrency` / `max_concurrent_requests`, `--maxBandwidth` /
/// `max_bandwidth`, `multipart_threshold` / `multipart_chunksize`).
pub struct Transfer {
    pub concurrency: usize,
    /// Objects of `threshold` bytes or more come down as ranged GETs of `part_size` bytes.
    pub multipart: Multipart,
    pub bandwidth: Option<Arc<Bandwidth>>,
}

impl Transfer {
    /// The switches first, then the profile's `s3` settings, then the defaults (as the sync).
    pub fn resolve(opts: &Options, s3: &ProfileS3) -> Transfer {
        let concurrency = opts
            .max_concurrency
            .or(s3.max_concurrent_requests)
            .unwrap_or_else(|| opts.concurrency());
        let multipart = Multipart::from_profile(s3);
        let rate = rate_limit(s3, opts.max_bandwidth);
        if let Some((r, from)) = &rate {
            log::info!(target: FLOW, "Downloads limited to {} in all ({from}).", show_rate(*r));
        }
        log::debug!(target: FLOW, "{concurrency} requests at a time; ranged downloads from {} bytes, ranges of {} bytes", multipart.threshold, multipart.part_size);
        Transfer {
            concurrency,
            multipart,
            bandwidth: rate.map(|(r, _)| Arc::new(Bandwidth::new(r))),
        }
    }
}

/// Waits until the bandwidth limit (if any) lets `n` more bytes through.
async fn pace(bandwidth: &Option<Arc<Bandwidth>>, n: usize) {
    if let Some(bw) = bandwidth {
        bw.take(n as u64).await;
    }
}

pub type Fetched = Result<(ObjectInfo, Option<Method>, Option<String>), Done>;

pub fn interrupted_or(ctx: &Ctx, d: Done) -> Done {
    if ctx.cancel.is_cancelled() {
        Done::Interrupted
    } else {
        d
    }
}

/// One GetObject (checksum mode on), written and hashed chunk by chunk.
pub async fn fetch_whole(ctx: &Ctx, key: &str, temp: &Temp) -> Fetched {
    let out = ctx
        .client
        .get_object()
        .bucket(&ctx.url.bucket)
        .key(key)
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .map_err(|err| get_error(ctx, key, &err))?;
    log::debug!(target: OUTPUT, "GetObject {}", ctx.shown_url(key));
    let (recorded, unusable) = Recorded::from_metadata(out.metadata());
    let info = ObjectInfo {
        size: out.content_length().unwrap_or(0).max(0) as u64,
        stored: StoredChecksums {
            crc64nvme: out.checksum_crc64_nvme().map(str::to_string),
            crc32: out.checksum_crc32().map(str::to_string),
            crc32c: out.checksum_crc32_c().map(str::to_string),
            checksum_type: out.checksum_type().map(|t| t.as_str().to_string()),
            etag: out.e_tag().map(str::to_string),
            sse: out.server_side_encryption().map(|x| x.as_str().to_string()),
        },
        recorded,
        unusable,
        etag: out.e_tag().map(str::to_string),
    };
    let method = checksum::choose(&info.stored);
    let mut hasher = method.as_ref().map(Hasher::new);
    let mut body = out.body;
    let mut file: &std::fs::File = temp.file();
    let mut written = 0u64;
    loop {
        match body.try_next().await {
            Ok(Some(chunk)) => {
                pace(&ctx.bandwidth, chunk.len()).await;
                if let Err(err) = file.write_all(&chunk) {
                    return Err(io_failed("cannot write the temporary file", err));
                }
                if let Some(h) = &mut hasher {
                    h.update(&chunk);
                }
                written += chunk.len() as u64;
                ctx.progress.add_bytes(chunk.len() as u64);
            }
            Ok(None) => break,
            Err(err) => {
                crate::health::transport_failure();
                return Err(interrupted_or(
                    ctx,
                    Done::Failed(
                        Cause::S3(S3Kind::NoAnswer),
                        format!("GetObject {}: {err}", display_bytes(key.as_bytes())),
                    ),
                ));
            }
        }
    }
    if written != info.size {
        return Err(Done::Failed(
            Cause::S3(S3Kind::NoAnswer),
            format!(
                "GetObject gave {written} bytes where the object has {}",
                info.size
            ),
        ));
    }
    let got = hasher.map(Hasher::finish);
    Ok((info, method, got))
}

fn get_error<E, R>(ctx: &Ctx, key: &str, err: &aws_sdk_s3::error::SdkError<E, R>) -> Done
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let e = s3_error("GetObject", key, err);
    if e.code.as_deref() == Some("InvalidObjectState") {
        return Done::Archived(format!(
            "the object is archived (an archive storage class or tier) and cannot be read until an S3 restore request made a copy available ({})",
            e.detail
        ));
    }
    interrupted_or(ctx, Done::Failed(e.cause, e.to_string()))
}

/// A large object: HeadObject, then ranged GETs (one permit each, pinned to the ETag) written
/// in place. Each range is hashed as it arrives and the CRCs are combined into the whole's;
/// only an MD5 (a large single-part object of another tool) needs the file read back.
/// `permit` (the file's request permit) is held through the HeadObject, then given back.
pub async fn fetch_ranges(
    ctx: &Ctx,
    key: &str,
    temp: &Temp,
    known: Option<ObjectInfo>,
    permit: Option<OwnedSemaphorePermit>,
) -> Fetched {
    let info = match known {
        Some(i) => i,
        None => match head(&ctx.client, &ctx.url.bucket, key).await {
            Ok((i, _)) => i,
            Err(err) => {
                return Err(interrupted_or(
                    ctx,
                    Done::Failed(err.cause(), err.to_string()),
                ))
            }
        },
    };
    drop(permit);
    let size = info.size;
    let psize = s3::part_size(size, ctx.multipart.part_size);
    let count = size.div_ceil(psize);
    let file = temp.file().clone();
    if let Err(err) = file.set_len(size) {
        return Err(io_failed("cannot size the temporary file", err));
    }
    let method = checksum::choose(&info.stored);
    let crc = method
        .as_ref()
        .filter(|m| !matches!(m, Method::Md5(_)))
        .cloned();
    let mut pieces: Vec<(u64, u64)> = vec![(0, 0); count as usize];
    let mut tasks: JoinSet<Result<(usize, u64, u64), Done>> = JoinSet::new();
    let mut next = 0u64;
    let mut first_error: Option<Done> = None;
    loop {
        while next < count && first_error.is_none() && tasks.len() < RANGES_PER_OBJECT {
            let permit = match ctx.limit.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) if tasks.is_empty() => tokio::select! {
                    _ = ctx.cancel.cancelled() => { first_error = Some(Done::Interrupted); break }
                    p = ctx.limit.clone().acquire_owned() => p.expect("semaphore closed"),
                },
                Err(_) => break,
            };
            let offset = next * psize;
            let len = psize.min(size - offset);
            let req = ctx
                .client
                .get_object()
                .bucket(&ctx.url.bucket)
                .key(key)
                .range(format!("bytes={offset}-{}", offset + len - 1))
                .set_if_match(info.etag.clone());
            let (file, key, progress) = (file.clone(), key.to_string(), ctx.progress.clone());
            let bandwidth = ctx.bandwidth.clone();
            let pinned = info.etag.clone();
            let mut hasher = crc.as_ref().map(Hasher::new);
            let index = next as usize;
            tasks.spawn(crate::health::scope(ctx.health.clone(), async move {
                let _permit = permit;
                let out = req
                    .send()
                    .await
                    .map_err(|err| {
                        let e = s3_error("GetObject", &key, &err);
                        Done::Failed(e.cause, e.to_string())
                    })?;
                // If-Match pins the range to the object the HeadObject saw; a server that
                // ignores it still names the version it sent.
                if let (Some(want), Some(got)) = (&pinned, out.e_tag()) {
                    if want != got {
                        return Err(Done::Failed(Cause::Verification, format!(
                            "the object changed during its download (ETag {want}, now {got}); not put in place, run the restore again"
                        )));
                    }
                }
                let mut body = out.body;
                let mut at = offset;
                while let Some(chunk) = body.try_next().await.map_err(|err| {
                    crate::health::transport_failure();
                    Done::Failed(Cause::S3(S3Kind::NoAnswer), format!(
                        "GetObject {}: {err}",
                        display_bytes(key.as_bytes())
                    ))
                })? {
                    pace(&bandwidth, chunk.len()).await;
                    if at + chunk.len() as u64 > offset + len {
                        return Err(Done::Failed(Cause::S3(S3Kind::Service),
                            "GetObject gave more bytes than asked for".into(),
                        ));
                    }
                    file.write_all_at(&chunk, at)
                        .map_err(|err| io_failed("cannot write the temporary file", err))?;
                    if let Some(h) = &mut hasher {
                        h.update(&chunk);
                    }
                    at += chunk.len() as u64;
                    progress.add_bytes(chunk.len() as u64);
                }
                if at != offset + len {
                    return Err(Done::Failed(Cause::S3(S3Kind::NoAnswer), format!(
                        "GetObject gave {} bytes of a {len}-byte range",
                        at - offset
                    )));
                }
                let value = hasher.and_then(Hasher::finish_crc).unwrap_or(0);
                Ok((index, value, len))
            }));
            next += 1;
        }
        if tasks.is_empty() {
            break;
        }
        let joined = tokio::select! {
            _ = ctx.cancel.cancelled() => {
                first_error.get_or_insert(Done::Interrupted);
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
                break;
            }
            j = tasks.join_next() => j,
        };
        match joined {
            Some(Ok(Ok((index, value, len)))) => pieces[index] = (value, len),
            None => {}
            Some(Ok(Err(d))) => {
                first_error.get_or_insert(interrupted_or(ctx, d));
                tasks.abort_all();
            }
            Some(Err(j)) if j.is_cancelled() => {}
            Some(Err(j)) => {
                first_error.get_or_insert(Done::Failed(
                    Cause::Internal,
                    format!("download task failed: {j}"),
                ));
            }
        }
        if next >= count && tasks.is_empty() {
            break;
        }
    }
    if let Some(d) = first_error {
        return Err(d);
    }
    let got = match &method {
        Some(m) if crc.is_some() => checksum::combine_crcs(m, &pieces),
        Some(m) => {
            let (m, file) = (m.clone(), file.clone());
            let hashed = tokio::task::spawn_blocking(move || {
                checksum::digest_reader(ReadAt { file: &file, at: 0 }, &m)
            })
            .await;
            match hashed {
                Ok(Ok(v)) => Some(v),
                Ok(Err(err)) => return Err(io_failed("cannot read the temporary file back", err)),
                Err(err) => {
                    return Err(Done::Failed(
                        Cause::Internal,
                        format!("hash task failed: {err}"),
                    ))
                }
            }
        }
        None => None,
    };
    Ok((info, method, got))
}

/// Reads a file from an offset with `pread`, leaving the descriptor's position alone.
struct ReadAt<'a> {
    file: &'a std::fs::File,
    at: u64,
}

impl std::io::Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}
