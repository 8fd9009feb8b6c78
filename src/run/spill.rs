//! Spill files: what a run must keep until its end but must not hold in memory (the tree as
//! walked, planned deletes, markers, placed files) is written here as records and read back in
//! order or backwards. The file is unnamed (`O_TMPFILE`, or created and unlinked at once), so
//! the kernel frees it on every exit, `kill -9` included, and no other user can open it.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::marker::PhantomData;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// Something a spill file holds: encoded to bytes and back.
pub trait Record: Sized {
    fn encode(&self, out: &mut Vec<u8>);
    fn decode(buf: &mut &[u8]) -> io::Result<Self>;
}

/// Read buffer of each reader: small, because a sorted listing merges many runs at once.
const READ_BUFFER: usize = 4 << 10;

/// Records being written. Each is framed by its length before and after, so the file can be
/// read in both directions.
pub struct Spill<R> {
    w: BufWriter<File>,
    scratch: Vec<u8>,
    count: u64,
    bytes: u64,
    _r: PhantomData<R>,
}

impl<R: Record> Spill<R> {
    pub fn new() -> io::Result<Self> {
        Ok(Spill {
            w: BufWriter::with_capacity(64 << 10, tempfile::tempfile()?),
            scratch: Vec::new(),
            count: 0,
            bytes: 0,
            _r: PhantomData,
        })
    }

    pub fn push(&mut self, r: &R) -> io::Result<()> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        r.encode(&mut scratch);
        let done = self.push_encoded(&scratch);
        self.scratch = scratch;
        done
    }

    /// Writes a record already encoded (by [`Record::encode`]).
    pub fn push_encoded(&mut self, body: &[u8]) -> io::Result<()> {
        let len = u32::try_from(body.len())
            .map_err(|_| io::Error::other("record too large"))?
            .to_le_bytes();
        self.w.write_all(&len)?;
        self.w.write_all(body)?;
        self.w.write_all(&len)?;
        self.count += 1;
        self.bytes += body.len() as u64 + 8;
        Ok(())
    }

    /// Records written so far.
    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes written so far: where the next record starts.
    pub fn offset(&self) -> u64 {
        self.bytes
    }

    pub fn finish(self) -> io::Result<Spilled<R>> {
        let file = self.w.into_inner().map_err(|e| e.into_error())?;
        Ok(Spilled {
            file: Arc::new(file),
            count: self.count,
            bytes: self.bytes,
            _r: PhantomData,
        })
    }
}

/// Records written, to be read any number of times (and from any thread: clones share the
/// file).
pub struct Spilled<R> {
    file: Arc<File>,
    count: u64,
    bytes: u64,
    _r: PhantomData<R>,
}

impl<R> Clone for Spilled<R> {
    fn clone(&self) -> Self {
        Spilled {
            file: self.file.clone(),
            count: self.count,
            bytes: self.bytes,
            _r: PhantomData,
        }
    }
}

impl<R: Record> Spilled<R> {
    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Every record, in the order written.
    pub fn iter(&self) -> Reader<R> {
        self.range(0, self.bytes)
    }

    /// The records between two offsets (see [`Spill::offset`]).
    pub fn range(&self, start: u64, end: u64) -> Reader<R> {
        Reader {
            file: self.file.clone(),
            pos: start,
            end,
            buf: Vec::new(),
            at: 0,
            _r: PhantomData,
        }
    }

    /// Every record, last written first.
    pub fn rev(&self) -> RevReader<R> {
        RevReader {
            file: self.file.clone(),
            pos: self.bytes,
            buf: Vec::new(),
            buf_start: self.bytes,
            _r: PhantomData,
        }
    }
}

/// Reads records forwards with positioned reads (readers of one file do not share an offset).
pub struct Reader<R> {
    file: Arc<File>,
    /// The next file offset to read into the buffer; `buf[at..]` is read but not consumed.
    pos: u64,
    end: u64,
    buf: Vec<u8>,
    at: usize,
    _r: PhantomData<R>,
}

impl<R: Record> Reader<R> {
    /// Makes `n` bytes available at `buf[at..]`.
    fn fill(&mut self, n: usize) -> io::Result<()> {
        if self.buf.len() - self.at >= n {
            return Ok(());
        }
        self.buf.drain(..self.at);
        self.at = 0;
        let want = n.max(READ_BUFFER);
        let have = self.buf.len();
        let left = (self.end - self.pos) as usize;
        let take = (want - have.min(want)).min(left);
        self.buf.resize(have + take, 0);
        self.file.read_exact_at(&mut self.buf[have..], self.pos)?;
        self.pos += take as u64;
        if self.buf.len() < n {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "spill file ends inside a record",
            ));
        }
        Ok(())
    }

    fn next_record(&mut self) -> io::Result<Option<R>> {
        if self.at == self.buf.len() && self.pos >= self.end {
            return Ok(None);
        }
        self.fill(4)?;
        let len =
            u32::from_le_bytes(self.buf[self.at..self.at + 4].try_into().expect("4")) as usize;
        self.fill(len + 8)?;
        let mut body = &self.buf[self.at + 4..self.at + 4 + len];
        let r = R::decode(&mut body)?;
        self.at += len + 8;
        Ok(Some(r))
    }
}

impl<R: Record> Iterator for Reader<R> {
    type Item = io::Result<R>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}

/// Reads records backwards.
pub struct RevReader<R> {
    file: Arc<File>,
    /// End of the unread part.
    pos: u64,
    /// The bytes `buf_start..buf_start + buf.len()` of the file.
    buf: Vec<u8>,
    buf_start: u64,
    _r: PhantomData<R>,
}

impl<R: Record> RevReader<R> {
    /// The bytes `from..self.pos`, read into the buffer if they are not there.
    fn bytes(&mut self, from: u64) -> io::Result<&[u8]> {
        if from < self.buf_start {
            let start = from.min(self.pos.saturating_sub(READ_BUFFER as u64));
            let mut b = vec![0; (self.pos - start) as usize];
            self.file.read_exact_at(&mut b, start)?;
            self.buf = b;
            self.buf_start = start;
        }
        let lo = (from - self.buf_start) as usize;
        let hi = (self.pos - self.buf_start) as usize;
        Ok(&self.buf[lo..hi])
    }

    fn next_record(&mut self) -> io::Result<Option<R>> {
        if self.pos == 0 {
            return Ok(None);
        }
        let tail = self.bytes(self.pos - 4)?;
        let len = u64::from(u32::from_le_bytes(tail.try_into().expect("4")));
        let start = self.pos - 8 - len;
        let mut body = &self.bytes(start)?[4..4 + len as usize];
        let r = R::decode(&mut body)?;
        self.pos = start;
        Ok(Some(r))
    }
}

impl<R: Record> Iterator for RevReader<R> {
    type Item = io::Result<R>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}

// The pieces records are made of.

pub fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn get_u64(buf: &mut &[u8]) -> io::Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first().ok_or_else(short)?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "bad number in spill file",
    ))
}

pub fn put_i128(out: &mut Vec<u8>, v: i128) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub fn get_i128(buf: &mut &[u8]) -> io::Result<i128> {
    let (b, rest) = buf.split_at_checked(16).ok_or_else(short)?;
    *buf = rest;
    Ok(i128::from_le_bytes(b.try_into().expect("16")))
}

pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u64(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

pub fn get_str(buf: &mut &[u8]) -> io::Result<Box<str>> {
    let n = get_u64(buf)? as usize;
    let (b, rest) = buf.split_at_checked(n).ok_or_else(short)?;
    *buf = rest;
    std::str::from_utf8(b)
        .map(Into::into)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad text in spill file"))
}

fn short() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "short record in spill file")
}

impl Record for Box<str> {
    fn encode(&self, out: &mut Vec<u8>) {
        put_str(out, self);
    }
    fn decode(buf: &mut &[u8]) -> io::Result<Self> {
        get_str(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_back_forwards_and_backwards() {
        let mut s = Spill::<Box<str>>::new().unwrap();
        let words: Vec<Box<str>> = (0..5000)
            .map(|i| "é".repeat(i % 700).into_boxed_str())
            .collect();
        for w in &words {
            s.push(w).unwrap();
        }
        let done = s.finish().unwrap();
        assert_eq!(done.len(), 5000);
        let fwd: Vec<Box<str>> = done.iter().map(Result::unwrap).collect();
        assert_eq!(fwd, words);
        let mut back: Vec<Box<str>> = done.rev().map(Result::unwrap).collect();
        back.reverse();
        assert_eq!(back, words);
        // A second reader does not disturb the first.
        let mut a = done.iter();
        let mut b = done.iter();
        assert_eq!(a.next().unwrap().unwrap(), b.next().unwrap().unwrap());
        assert_eq!(a.next().unwrap().unwrap(), words[1]);
    }

    #[test]
    fn numbers_round_trip() {
        let mut out = Vec::new();
        for v in [0u64, 1, 127, 128, u64::MAX] {
            put_u64(&mut out, v);
        }
        put_i128(&mut out, -5);
        let mut b = &out[..];
        for v in [0u64, 1, 127, 128, u64::MAX] {
            assert_eq!(get_u64(&mut b).unwrap(), v);
        }
        assert_eq!(get_i128(&mut b).unwrap(), -5);
        assert!(b.is_empty());
        assert!(get_u64(&mut b).is_err());
    }
}
