//! Request bodies on the admin listener: the `Content-Length` checked on the
//! head (missing: 400; over `PUBLISH_MAX_BYTES`: 413), then read as it
//! arrives under one deadline for the whole request, so memory follows
//! what was sent, never what was declared.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::conn::http::Request;
use crate::conn::response::{self, Problem};

/// Time allowed to send a whole request body.
const REQUEST_DEADLINE: Duration = Duration::from_secs(30);
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Read granularity (and the most reserved ahead of the bytes that came).
const CHUNK: usize = 64 * 1024;

/// The body's declared length is acceptable; otherwise the refusal.
pub fn check_length(req: &Request, max: usize) -> Result<(), Vec<u8>> {
    match req.content_length {
        None => Err(response::problem(
            Problem::BadRequest,
            "POST /publish needs a Content-Length body",
            "",
        )),
        Some(len) if len > max => Err(response::problem(
            Problem::PayloadTooLarge,
            &too_large(len, max),
            "",
        )),
        Some(_) => Ok(()),
    }
}

/// The refusal of a publish body of `len` bytes over `max` (HTTP 413, gRPC
/// `INVALID_ARGUMENT`).
pub fn too_large(len: usize, max: usize) -> String {
    format!("a body of {len} bytes is over PUBLISH_MAX_BYTES ({max})")
}

/// Reads the rest of a body whose first bytes (`body`) came with the head.
pub fn read(
    req: &Request,
    stream: &mut DeadlineStream,
    mut body: Vec<u8>,
    max: usize,
) -> std::io::Result<Vec<u8>> {
    let len = req.content_length.unwrap_or(0).min(max);
    body.truncate(len);
    let mut chunk = vec![0u8; CHUNK.min(len.max(1))];
    while body.len() < len {
        let want = (len - body.len()).min(chunk.len());
        let n = stream.read(&mut chunk[..want])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(body)
}

/// A connection whose reads all share one deadline (a client that trickles
/// a byte at a time is still cut), and whose writes time out.
pub struct DeadlineStream {
    stream: TcpStream,
    deadline: Instant,
}

impl DeadlineStream {
    /// Puts a connection the front read non-blocking back to blocking
    /// reads under the deadline.
    pub fn new(stream: TcpStream) -> std::io::Result<Self> {
        stream.set_nonblocking(false)?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Self {
            stream,
            deadline: Instant::now() + REQUEST_DEADLINE,
        })
    }
}

impl Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "request not complete within its deadline",
            ));
        }
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

impl Write for DeadlineStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.stream.flush()
    }
}
