//! Request bodies streamed from an open file by positioned reads, paced by the bandwidth limit.

use std::fs::File;
use std::future::Future;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use aws_sdk_s3::primitives::ByteStream;

use super::error::OpError;
use super::settings::Bandwidth;

/// The user metadata key (`x-amz-meta-mtime`) that holds the file's mtime, as rclone writes it.
pub const MTIME_METADATA: &str = crate::metadata::MTIME;

/// Bytes per positioned read of a streamed body: large enough that reads are few, small
/// enough that each request holds little memory while it waits for the network.
const BODY_CHUNK: u64 = 256 * 1024;

/// A request body of `remaining` bytes of an open file from `offset`, read by positioned
/// reads (`pread`) on a blocking thread. It reads the file the upload opened and checked,
/// whatever happens to its path meanwhile (the SDK's path body reopens by name).
/// With a bandwidth limit, each chunk is read once the limit grants it (waiting on a timer).
struct FileRange {
    file: Arc<File>,
    offset: u64,
    remaining: u64,
    reading: Option<tokio::task::JoinHandle<std::io::Result<bytes::Bytes>>>,
    bandwidth: Option<Arc<Bandwidth>>,
    /// Bytes the limit granted for the next read (0: none asked yet).
    granted: u64,
    waiting: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl http_body::Body for FileRange {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>> {
        let this = &mut *self;
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        if let (None, Some(bw)) = (&this.reading, &this.bandwidth) {
            if this.granted == 0 {
                this.granted = this.remaining.min(bw.chunk());
                this.waiting = bw
                    .reserve(this.granted)
                    .map(|when| Box::pin(tokio::time::sleep_until(when)));
            }
            if let Some(w) = &mut this.waiting {
                std::task::ready!(w.as_mut().poll(cx));
                this.waiting = None;
            }
        }
        let reading = this.reading.get_or_insert_with(|| {
            let (file, offset) = (this.file.clone(), this.offset);
            let len = match this.granted {
                0 => this.remaining.min(BODY_CHUNK),
                n => n,
            } as usize;
            tokio::task::spawn_blocking(move || read_exact_at(&file, offset, len).map(Into::into))
        });
        let done = std::task::ready!(Pin::new(reading).poll(cx));
        this.reading = None;
        this.granted = 0;
        Poll::Ready(Some(match done {
            Ok(Ok(bytes)) => {
                this.offset += bytes.len() as u64;
                this.remaining -= bytes.len() as u64;
                Ok(http_body::Frame::data(bytes))
            }
            Ok(Err(e)) => Err(e),
            Err(e) => Err(std::io::Error::other(e)),
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

/// Reads exactly `len` bytes at `offset`; a file that ends earlier has shrunk.
pub(super) fn read_exact_at(file: &File, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the file shrank while being read",
                ))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(buf)
}

/// A retryable body of `len` bytes of `file` from `offset` (each attempt reads afresh, and
/// counts against the bandwidth limit again).
pub(super) fn stream(
    file: &Arc<File>,
    offset: u64,
    len: u64,
    bandwidth: Option<&Arc<Bandwidth>>,
) -> ByteStream {
    let file = file.clone();
    let bandwidth = bandwidth.cloned();
    ByteStream::new(aws_smithy_types::body::SdkBody::retryable(move || {
        aws_smithy_types::body::SdkBody::from_body_1_x(FileRange {
            file: file.clone(),
            offset,
            remaining: len,
            reading: None,
            bandwidth: bandwidth.clone(),
            granted: 0,
            waiting: None,
        })
    }))
}

/// The open file an upload reads, and what it writes of it. `unchanged` says whether the
/// file is still the version that was opened (see `transfer`); it is asked after a body
/// read into memory, before that body is sent, and before a multipart upload is completed.
pub struct Source<'a> {
    pub file: Arc<File>,
    /// For messages.
    pub path: &'a Path,
    /// Bytes to upload (from the start of the file).
    pub size: u64,
    /// The mtime of the version read, stored as the object's `mtime` metadata.
    pub mtime_ns: i128,
    /// `st_mode`, owner and group of the version read (`mode`, `uid`, `gid` metadata).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub unchanged: &'a (dyn Fn() -> Result<(), OpError> + Send + Sync),
}

impl Source<'_> {
    /// The user metadata every upload carries, in rclone's names and formats so that rclone
    /// and other tools read it back: `mtime` (seconds since the epoch with up to 9 decimals),
    /// `mode` (octal `st_mode` with its file type, `0100644`), `uid` and `gid` (decimal).
    pub fn metadata(&self) -> std::collections::HashMap<String, String> {
        crate::metadata::record(self.mtime_ns, self.mode, self.uid, self.gid)
    }
}
