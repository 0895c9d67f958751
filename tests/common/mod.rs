//! The integration-test harness shared by every file in `tests/`.
//!
//! - [`Herald`]: the real `herald` binary on free loopback ports, its log
//!   captured to a temp file (printed when a test fails), stopped on drop.
//! - [`SseClient`]: a real HTTP/1.1 client over `std::net::TcpStream` that
//!   parses the response head and then the SSE stream (WHATWG rules).
//! - [`http_exchange`] and [`HttpResponse`]: one raw request, one response.
//! - [`jwt`]: token minting (HMAC, and RSA / EC / Ed25519 keys made by the
//!   `openssl` CLI).
//! - [`RedisServer`] and [`redis_cmd`]: a throwaway `redis-server` and a tiny
//!   RESP client.
//! - [`kafka::Broker`]: a throwaway Kafka-protocol broker (`tansu`) and a
//!   librdkafka producer.
//!
//! Everything talks to 127.0.0.1 only, every wait is bounded, and only
//! processes started here are ever killed (by their own `Child` handle).

#![allow(dead_code)]

pub mod kafka;

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long an awaited event may take on a loaded 2-core box.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long start-up may take.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

// ----- ports and temp dirs ----------------------------------------------------

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A TCP port on 127.0.0.1 that was free a moment ago (bind :0, read, drop).
/// Never hands out the same port twice within one test binary.
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        let mut set = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
        if set.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
    panic!("could not find a free port");
}

/// `127.0.0.1:<free port>`.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// A directory under the system temp dir, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "herald-test-{prefix}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

// ----- the herald process ---------------------------------------------------

pub const HERALD: &str = env!("CARGO_BIN_EXE_herald");

/// The `IO_BACKEND` every herald of this test run uses: the runner's
/// `HERALD_TEST_IO_BACKEND` (`scripts/test.sh` runs the suite once with
/// `epoll` and once with `uring`), else herald's own default.
pub fn test_backend() -> Option<String> {
    std::env::var("HERALD_TEST_IO_BACKEND")
        .ok()
        .filter(|b| !b.is_empty())
}

/// Builds the command for `herald` with a clean environment: only `PATH`, the
/// test run's `IO_BACKEND`, the harness defaults and `envs` (later entries
/// win).
fn herald_command(envs: &[(&str, &str)], defaults: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(HERALD);
    cmd.env_clear();
    if let Ok(path) = std::env::var("PATH") {
        cmd.env("PATH", path);
    }
    if let Some(backend) = test_backend() {
        cmd.env("IO_BACKEND", backend);
    }
    for (k, v) in defaults {
        cmd.env(k, v);
    }
    for (k, v) in envs {
        if *k == NOFILE {
            let limit: libc::rlim_t = v.parse().expect("a descriptor count");
            let lim = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            // SAFETY: setrlimit is async-signal-safe and `lim` is a plain
            // value copied into the closure; nothing else runs in the child
            // between fork and exec.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                        Ok(())
                    } else {
                        Err(io::Error::last_os_error())
                    }
                });
            }
            continue;
        }
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// Not an environment variable: `(NOFILE, "40")` in `envs` starts herald
/// with soft and hard `RLIMIT_NOFILE` of 40.
pub const NOFILE: &str = "HARNESS_RLIMIT_NOFILE";

/// A running `herald` started by this test; killed and reaped on drop.
pub struct Herald {
    child: Option<Child>,
    listen: SocketAddr,
    admin: SocketAddr,
    log_path: PathBuf,
    exit: Option<ExitStatus>,
    _dir: TempDir,
}

impl Herald {
    /// Starts herald with `envs` on top of the harness defaults
    /// (`LISTEN_ADDR`/`ADMIN_ADDR` on free loopback ports, `WORKERS=2`,
    /// `LOG_LEVEL=warn`, `PIN_CORES=false`), and waits until `GET /health`
    /// answers on both listeners. Panics with the log if it does not.
    pub fn start(envs: &[(&str, &str)]) -> Herald {
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start(envs) {
                Ok(h) => return h,
                // A port taken between free_port() and bind(): try new ones.
                Err(log) if log.contains("cannot listen") => last = log,
                Err(log) => panic!("herald did not start:\n{log}"),
            }
        }
        panic!("herald could not bind its ports three times:\n{last}");
    }

    /// One start attempt; `Err` holds the log when it exited or never became
    /// healthy.
    pub fn try_start(envs: &[(&str, &str)]) -> Result<Herald, String> {
        let dir = TempDir::new("herald");
        let log_path = dir.join("herald.log");
        let log = File::create(&log_path).expect("create log file");
        let listen = envs
            .iter()
            .find(|(k, _)| *k == "LISTEN_ADDR")
            .map(|(_, v)| v.parse().expect("LISTEN_ADDR override must be an address"))
            .unwrap_or_else(free_addr);
        let admin = envs
            .iter()
            .find(|(k, _)| *k == "ADMIN_ADDR")
            .map(|(_, v)| v.parse().expect("ADMIN_ADDR override must be an address"))
            .unwrap_or_else(free_addr);
        let defaults = [
            ("LISTEN_ADDR", listen.to_string()),
            ("ADMIN_ADDR", admin.to_string()),
            ("WORKERS", "2".to_string()),
            ("LOG_LEVEL", "warn".to_string()),
            ("PIN_CORES", "false".to_string()),
        ];
        let child = herald_command(envs, &defaults)
            .stdout(log.try_clone().expect("dup log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn herald");
        let mut h = Herald {
            child: Some(child),
            listen,
            admin,
            log_path,
            exit: None,
            _dir: dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = h.try_exit() {
                return Err(format!("herald exited with {status}; log:\n{}", h.log()));
            }
            if health_ok(h.listen) && health_ok(h.admin) {
                return Ok(h);
            }
            if Instant::now() > deadline {
                let log = h.log();
                return Err(format!(
                    "herald not healthy within {START_TIMEOUT:?}; log:\n{log}"
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Runs herald with `envs` (ports default to free ones so that a valid
    /// configuration cannot collide with anything) and expects it to exit by
    /// itself within 10 s: returns its status and stderr.
    pub fn run_expect_exit(envs: &[(&str, &str)]) -> (ExitStatus, String) {
        let (status, _stdout, stderr) = Self::run_with_args(&[], envs);
        (status, stderr)
    }

    /// Runs `herald <args>` with `envs` and expects it to exit within 10 s:
    /// returns status, stdout and stderr.
    pub fn run_with_args(args: &[&str], envs: &[(&str, &str)]) -> (ExitStatus, String, String) {
        let dir = TempDir::new("run");
        let out_path = dir.join("stdout");
        let err_path = dir.join("stderr");
        let defaults = [
            ("LISTEN_ADDR", free_addr().to_string()),
            ("ADMIN_ADDR", free_addr().to_string()),
            ("WORKERS", "1".to_string()),
            ("PIN_CORES", "false".to_string()),
        ];
        let mut child = herald_command(envs, &defaults)
            .args(args)
            .stdout(File::create(&out_path).expect("create stdout file"))
            .stderr(File::create(&err_path).expect("create stderr file"))
            .spawn()
            .expect("spawn herald");
        let status = wait_child(&mut child, Duration::from_secs(10));
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        match status {
            Some(s) => (s, read(&out_path), read(&err_path)),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "herald {args:?} with {envs:?} did not exit within 10 s\nstdout:\n{}\nstderr:\n{}",
                    read(&out_path),
                    read(&err_path)
                );
            }
        }
    }

    /// The public listener (`/sse`, `/events`, `/health`).
    pub fn addr(&self) -> SocketAddr {
        self.listen
    }

    /// The admin listener (`/health`, `/publish`).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything herald wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// `POST /publish` with `body` and no token: `(status, body)`.
    pub fn publish(&self, body: &str) -> (u16, String) {
        self.publish_with_token(body, None)
    }

    /// `POST /publish` with an optional bearer token: `(status, body)`.
    pub fn publish_with_token(&self, body: &str, token: Option<&str>) -> (u16, String) {
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "POST /publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             {auth}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let r = http_exchange(self.admin, req.as_bytes(), EVENT_TIMEOUT)
            .unwrap_or_else(|e| panic!("POST /publish failed: {e}\nlog:\n{}", self.log()));
        (r.status, r.body_text())
    }

    /// Publishes and asserts `202 {"accepted": n}`; returns `n`.
    pub fn publish_ok(&self, body: &str) -> u64 {
        let (status, reply) = self.publish(body);
        assert_eq!(status, 202, "POST /publish {body} answered {reply}");
        let v: serde_json::Value = serde_json::from_str(&reply)
            .unwrap_or_else(|e| panic!("publish reply {reply:?} is not JSON: {e}"));
        v["accepted"]
            .as_u64()
            .unwrap_or_else(|| panic!("publish reply {reply} has no numeric `accepted`"))
    }

    /// Publishes a JSON value (object or array), asserting 202.
    pub fn publish_json(&self, v: &serde_json::Value) -> u64 {
        self.publish_ok(&v.to_string())
    }

    /// Opens a stream on the public listener and asserts `200`.
    pub fn sse(&self, path_and_query: &str, headers: &[(&str, &str)]) -> SseClient {
        SseClient::open(self.listen, path_and_query, headers)
    }

    /// Opens `/sse?token=<token>` and asserts `200`.
    pub fn sse_with_token(&self, token: &str) -> SseClient {
        self.sse(&format!("/sse?token={token}"), &[])
    }

    /// A stream of `user` (a minted JWT), with `query` appended (`&k=v…`)
    /// and, when given, a `Last-Event-ID` header.
    pub fn sse_as(&self, user: &str, query: &str, last: Option<&str>) -> SseClient {
        let headers: Vec<(&str, &str)> = last.map(|l| ("Last-Event-ID", l)).into_iter().collect();
        self.sse(&format!("/sse?token={}{query}", jwt::user(user)), &headers)
    }

    /// A request on the public listener, whatever the answer.
    pub fn connect(&self, path_and_query: &str, headers: &[(&str, &str)]) -> SseClient {
        SseClient::connect(self.listen, path_and_query, headers).unwrap_or_else(|e| {
            panic!(
                "GET {path_and_query} failed at the transport level: {e}\nlog:\n{}",
                self.log()
            )
        })
    }

    /// Sends SIGTERM to this herald (and nothing else).
    pub fn sigterm(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Sends SIGHUP to this herald (and nothing else): a reload.
    pub fn sighup(&self) {
        self.signal(libc::SIGHUP);
    }

    /// Waits (bounded by [`EVENT_TIMEOUT`]) until the log holds `needle`
    /// `count` times in all; panics with the log otherwise, or when herald
    /// exits meanwhile.
    pub fn wait_log(&mut self, needle: &str, count: usize) {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        loop {
            if self.log().matches(needle).count() >= count {
                return;
            }
            if let Some(status) = self.try_exit() {
                panic!("herald exited ({status}) before logging {needle:?}");
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} (x{count}) in the log within {EVENT_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends SIGINT to this herald (and nothing else).
    pub fn sigint(&self) {
        self.signal(libc::SIGINT);
    }

    /// Kills this herald with SIGKILL (a crash: nothing is cleaned up) and
    /// reaps it.
    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        assert!(
            self.wait_exit(Duration::from_secs(10)).is_some(),
            "herald survived SIGKILL"
        );
    }

    fn signal(&self, sig: libc::c_int) {
        if self.exit.is_some() {
            return;
        }
        let pid = self.pid().expect("herald child") as libc::pid_t;
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped
        // (so the pid cannot have been reused).
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
    }

    fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(s)) = child.try_wait() {
                    self.exit = Some(s);
                }
            }
        }
        self.exit
    }

    /// Waits (bounded) for herald to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_exit() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.exit.is_none() {
                // Only our own child, by its handle (SIGKILL), then reaped.
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "----- herald log ({} / admin {}) -----\n{}----- end of herald log -----",
                self.listen,
                self.admin,
                self.log()
            );
        }
    }
}

fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn health_ok(addr: SocketAddr) -> bool {
    let req = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    matches!(http_exchange(addr, req, Duration::from_secs(2)), Ok(r) if r.status == 200)
}

// ----- plain HTTP ---------------------------------------------------------------

/// A complete HTTP response.
#[derive(Debug, Clone, Default)]
pub struct HttpResponse {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body when it is not.
    pub fn body_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body of {} {} is not JSON ({e}): {:?}",
                self.status,
                self.reason,
                self.body_text()
            )
        })
    }
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Connects to `addr` with bounded timeouts.
pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_nodelay(true)?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}

/// Connects with a small receive buffer (set before connecting, so the
/// kernel does not autotune it): a listener that stops reading then holds
/// little in its own socket.
pub fn connect_small_rcvbuf(addr: SocketAddr, bytes: usize) -> io::Result<TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_recv_buffer_size(bytes)?;
    socket.connect_timeout(&addr.into(), Duration::from_secs(5))?;
    let s: TcpStream = socket.into();
    s.set_nodelay(true)?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}

/// The kernel's largest TCP send buffer (`tcp_wmem` max), 4 MiB if unknown:
/// how much a server socket may hold for a peer that stopped reading.
pub fn tcp_wmem_max() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2).and_then(|v| v.parse().ok()))
        .unwrap_or(4 << 20)
}

/// Sends `request` as is and reads one response (up to `Content-Length`, else
/// to EOF), within `timeout`.
pub fn http_exchange(
    addr: SocketAddr,
    request: &[u8],
    timeout: Duration,
) -> io::Result<HttpResponse> {
    let mut stream = connect(addr)?;
    stream.write_all(request)?;
    let mut r = Reader::new(stream);
    let deadline = Instant::now() + timeout;
    let mut resp = r.read_head(deadline)?;
    resp.body = r.read_body(&resp.headers, deadline)?;
    Ok(resp)
}

/// `GET path` on `addr`, asserting 200 and a JSON body.
pub fn get_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let r = http_exchange(addr, req.as_bytes(), EVENT_TIMEOUT)
        .unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"));
    assert_eq!(r.status, 200, "GET {path} answered {r:?}");
    r.body_json()
}

/// A byte reader over a socket with deadlines; keeps what it read but has not
/// handed out yet.
struct Reader {
    stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
    /// An error such as a reset, seen once the buffer ran dry.
    error: Option<io::ErrorKind>,
}

enum Fill {
    Data,
    Eof,
    Timeout,
}

impl Reader {
    fn new(stream: TcpStream) -> Reader {
        Reader {
            stream,
            buf: Vec::new(),
            eof: false,
            error: None,
        }
    }

    /// Reads more bytes before `deadline`. A reset counts as end of stream
    /// (recorded in `error`).
    fn fill(&mut self, deadline: Instant) -> io::Result<Fill> {
        if self.eof {
            return Ok(Fill::Eof);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(Fill::Timeout);
        }
        let wait = (deadline - now).max(Duration::from_millis(1));
        self.stream.set_read_timeout(Some(wait))?;
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(Fill::Eof);
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(Fill::Data);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(Fill::Timeout)
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    self.eof = true;
                    self.error = Some(e.kind());
                    return Ok(Fill::Eof);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads a response head (status line and headers).
    fn read_head(&mut self, deadline: Instant) -> io::Result<HttpResponse> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                return parse_head(&head);
            }
            match self.fill(deadline)? {
                Fill::Data => {}
                Fill::Eof => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "connection closed before a complete response head ({} bytes: {:?}{})",
                            self.buf.len(),
                            String::from_utf8_lossy(&self.buf),
                            self.error.map(|e| format!(", {e:?}")).unwrap_or_default()
                        ),
                    ))
                }
                Fill::Timeout => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "no complete response head in time ({} bytes: {:?})",
                            self.buf.len(),
                            String::from_utf8_lossy(&self.buf)
                        ),
                    ))
                }
            }
        }
    }

    /// Reads a body: `Content-Length` bytes, else everything up to EOF.
    fn read_body(
        &mut self,
        headers: &[(String, String)],
        deadline: Instant,
    ) -> io::Result<Vec<u8>> {
        let len = find_header(headers, "content-length").and_then(|v| v.trim().parse().ok());
        loop {
            if let Some(len) = len {
                if self.buf.len() >= len {
                    return Ok(self.buf.drain(..len).collect());
                }
            }
            match self.fill(deadline)? {
                Fill::Data => {}
                Fill::Eof => return Ok(std::mem::take(&mut self.buf)),
                Fill::Timeout => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("body not complete in time ({} bytes)", self.buf.len()),
                    ))
                }
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(head: &str) -> io::Result<HttpResponse> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {head:?}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("empty head"))?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if version != "HTTP/1.1" {
        return Err(bad("not an HTTP/1.1 status line"));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status code"))?;
    let reason = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    for line in lines {
        let (k, v) = line.split_once(':').ok_or_else(|| bad("bad header line"))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok(HttpResponse {
        status,
        reason,
        headers,
        body: Vec::new(),
    })
}

/// Asserts that `r` is an RFC 9457 problem with this status, `type` and
/// `title`, and returns its JSON.
pub fn assert_problem(r: &HttpResponse, status: u16, kind: &str, title: &str) -> serde_json::Value {
    assert_eq!(
        r.status,
        status,
        "expected {status} {kind}, got {} {} {:?}",
        r.status,
        r.reason,
        r.body_text()
    );
    assert_eq!(r.reason, title, "reason phrase of {status}");
    let ct = r.header("content-type").unwrap_or("");
    assert!(
        ct.starts_with("application/problem+json"),
        "content-type of {status} {kind} is {ct:?}"
    );
    let v = r.body_json();
    assert_eq!(v["type"], kind, "problem {v}");
    assert_eq!(v["title"], title, "problem {v}");
    assert_eq!(v["status"], status, "problem {v}");
    assert!(
        v["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "problem {v} has no detail"
    );
    v
}

// ----- SSE client ---------------------------------------------------------------

/// One dispatched SSE event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `id:` field of this event's block, if it had one.
    pub id: Option<String>,
    /// The `event:` field, if any (`None` means type `message`).
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The raw lines of the block, without terminators.
    pub raw: Vec<String>,
}

impl SseEvent {
    /// The event type as `EventSource` sees it.
    pub fn event_type(&self) -> &str {
        self.event.as_deref().unwrap_or("message")
    }

    pub fn data_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("data of {self:?} is not JSON: {e}"))
    }

    /// The server id `<ms>-<seq>` as numbers; panics on any other form.
    pub fn server_id(&self) -> (u64, u64) {
        let id = self
            .id
            .as_deref()
            .unwrap_or_else(|| panic!("{self:?} has no id"));
        let (ms, seq) = id
            .split_once('-')
            .unwrap_or_else(|| panic!("id {id:?} is not <ms>-<seq>"));
        (
            ms.parse().unwrap_or_else(|_| panic!("id {id:?}: ms")),
            seq.parse().unwrap_or_else(|_| panic!("id {id:?}: seq")),
        )
    }
}

/// What the stream yields: an event, or a comment line (`: text`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseItem {
    Event(SseEvent),
    /// The text after `:`, one leading space removed.
    Comment(String),
}

/// A real HTTP/1.1 client for `GET /sse` that parses the SSE stream.
pub struct SseClient {
    reader: Reader,
    response: HttpResponse,
    // Parser state (WHATWG "interpreting an event stream").
    skip_lf: bool,
    block: SseEvent,
    data_seen: bool,
    retry: Option<u64>,
    first_line: Option<String>,
    comments: Vec<String>,
}

impl SseClient {
    /// Sends `GET path_and_query` with `extra_headers` and reads the response
    /// head; a non-200 response's body is read too (up to EOF or
    /// Content-Length). Errors only on transport problems.
    pub fn connect(
        addr: SocketAddr,
        path_and_query: &str,
        extra_headers: &[(&str, &str)],
    ) -> io::Result<SseClient> {
        Self::connect_on(connect(addr)?, path_and_query, extra_headers)
    }

    /// [`SseClient::connect`] over an already connected socket (e.g. one
    /// made by [`connect_small_rcvbuf`]).
    pub fn connect_on(
        stream: TcpStream,
        path_and_query: &str,
        extra_headers: &[(&str, &str)],
    ) -> io::Result<SseClient> {
        let mut req = format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
        );
        for (k, v) in extra_headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        Self::raw_on(stream, req.as_bytes())
    }

    /// Sends `request` verbatim and reads the response head (and the body of
    /// a non-200).
    pub fn connect_raw(addr: SocketAddr, request: &[u8]) -> io::Result<SseClient> {
        Self::raw_on(connect(addr)?, request)
    }

    fn raw_on(mut stream: TcpStream, request: &[u8]) -> io::Result<SseClient> {
        stream.write_all(request)?;
        let mut reader = Reader::new(stream);
        let deadline = Instant::now() + EVENT_TIMEOUT;
        let mut response = reader.read_head(deadline)?;
        if response.status != 200 {
            response.body = reader.read_body(&response.headers, deadline)?;
        }
        Ok(SseClient {
            reader,
            response,
            skip_lf: false,
            block: SseEvent::default(),
            data_seen: false,
            retry: None,
            first_line: None,
            comments: Vec::new(),
        })
    }

    /// Like [`SseClient::connect`], but panics unless the answer is `200`.
    pub fn open(addr: SocketAddr, path_and_query: &str, headers: &[(&str, &str)]) -> SseClient {
        let c = Self::connect(addr, path_and_query, headers)
            .unwrap_or_else(|e| panic!("GET {path_and_query}: {e}"));
        assert_eq!(
            c.status(),
            200,
            "GET {path_and_query} answered {} {}: {}",
            c.status(),
            c.response.reason,
            c.response.body_text()
        );
        c
    }

    pub fn status(&self) -> u16 {
        self.response.status
    }

    pub fn response(&self) -> &HttpResponse {
        &self.response
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.response.header(name)
    }

    /// Every header called `name`.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.response
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body of a non-200 answer as JSON.
    pub fn body_json(&self) -> serde_json::Value {
        self.response.body_json()
    }

    /// The last `retry:` value seen.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    /// The first line of the stream body, once read.
    pub fn first_line(&self) -> Option<&str> {
        self.first_line.as_deref()
    }

    /// Comments seen so far (including those skipped by `next_event`).
    pub fn comments(&self) -> &[String] {
        &self.comments
    }

    /// The underlying socket (e.g. to shut it down).
    pub fn stream(&self) -> &TcpStream {
        &self.reader.stream
    }

    /// The next event or comment within `timeout`; `None` on timeout or EOF.
    pub fn next_item(&mut self, timeout: Duration) -> Option<SseItem> {
        let deadline = Instant::now() + timeout;
        loop {
            while let Some(line) = self.take_line() {
                if let Some(item) = self.process_line(line) {
                    return Some(item);
                }
            }
            match self.reader.fill(deadline) {
                Ok(Fill::Data) => {}
                Ok(Fill::Eof) | Ok(Fill::Timeout) | Err(_) => return None,
            }
        }
    }

    /// The next dispatched event within `timeout` (comments are recorded and
    /// skipped); `None` on timeout or EOF.
    pub fn next_event(&mut self, timeout: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_item(left)? {
                SseItem::Event(e) => return Some(e),
                SseItem::Comment(_) => continue,
            }
        }
    }

    /// The next event within [`EVENT_TIMEOUT`]; panics (saying why) if none.
    pub fn expect_event(&mut self) -> SseEvent {
        match self.next_event(EVENT_TIMEOUT) {
            Some(e) => e,
            None => panic!(
                "no event within {EVENT_TIMEOUT:?} ({}; {} bytes unparsed)",
                if self.reader.eof {
                    "the server closed the connection"
                } else {
                    "timed out"
                },
                self.reader.buf.len()
            ),
        }
    }

    /// The next event that is not a heartbeat (`event: ping`).
    pub fn expect_non_ping(&mut self) -> SseEvent {
        loop {
            let e = self.expect_event();
            if e.event.as_deref() != Some("ping") {
                return e;
            }
        }
    }

    /// Whether the server has closed the stream (EOF or reset seen).
    pub fn is_eof(&self) -> bool {
        self.reader.eof
    }

    /// Reads and discards until the server closes the connection; true if it
    /// did within `timeout`.
    pub fn wait_closed(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            self.reader.buf.clear();
            match self.reader.fill(deadline) {
                Ok(Fill::Data) => {}
                Ok(Fill::Eof) => return true,
                Ok(Fill::Timeout) => return false,
                Err(_) => return true,
            }
        }
    }

    /// Like [`SseClient::wait_closed`], but returns how many body bytes were
    /// drained before the close (`None` if it stayed open).
    pub fn drain_until_closed(&mut self, timeout: Duration) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        let mut total = 0;
        loop {
            total += self.reader.buf.len();
            self.reader.buf.clear();
            match self.reader.fill(deadline) {
                Ok(Fill::Data) => {}
                Ok(Fill::Eof) | Err(_) => return Some(total),
                Ok(Fill::Timeout) => return None,
            }
        }
    }

    /// Closes our side completely.
    pub fn close(self) {
        let _ = self.reader.stream.shutdown(Shutdown::Both);
    }

    /// Takes one complete line from the buffer (CR, LF or CRLF terminated).
    fn take_line(&mut self) -> Option<String> {
        if self.skip_lf {
            match self.reader.buf.first() {
                None => return None,
                Some(b'\n') => {
                    self.reader.buf.remove(0);
                    self.skip_lf = false;
                }
                Some(_) => self.skip_lf = false,
            }
        }
        let pos = self
            .reader
            .buf
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')?;
        let line = String::from_utf8_lossy(&self.reader.buf[..pos]).into_owned();
        self.skip_lf = self.reader.buf[pos] == b'\r';
        self.reader.buf.drain(..=pos);
        if self.first_line.is_none() {
            self.first_line = Some(line.clone());
        }
        Some(line)
    }

    fn process_line(&mut self, line: String) -> Option<SseItem> {
        if line.is_empty() {
            let block = std::mem::take(&mut self.block);
            let had_data = std::mem::replace(&mut self.data_seen, false);
            if !had_data {
                return None;
            }
            let mut ev = block;
            if ev.data.ends_with('\n') {
                ev.data.pop();
            }
            return Some(SseItem::Event(ev));
        }
        if let Some(comment) = line.strip_prefix(':') {
            let text = comment.strip_prefix(' ').unwrap_or(comment).to_string();
            self.comments.push(text.clone());
            return Some(SseItem::Comment(text));
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f.to_string(), v.strip_prefix(' ').unwrap_or(v).to_string()),
            None => (line.clone(), String::new()),
        };
        self.block.raw.push(line);
        match field.as_str() {
            "event" => self.block.event = Some(value),
            "data" => {
                self.data_seen = true;
                self.block.data.push_str(&value);
                self.block.data.push('\n');
            }
            "id" if !value.contains('\0') => self.block.id = Some(value),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry = value.parse().ok();
            }
            _ => {}
        }
        None
    }
}

// ----- JWT ------------------------------------------------------------------------

pub mod jwt {
    //! Token minting for tests.

    use std::path::Path;
    use std::process::Command;
    use std::sync::OnceLock;

    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    use serde_json::{json, Value};

    use super::TempDir;

    /// The HMAC secret most tests configure as `JWT_SECRET`.
    pub const SECRET: &str = "integration-test-secret";

    pub fn now() -> u64 {
        super::unix_secs()
    }

    /// An HS256 token over `claims`.
    pub fn hs256(secret: &str, claims: &Value) -> String {
        hmac(Algorithm::HS256, secret, claims)
    }

    /// An HMAC token (HS256/384/512) over `claims`.
    pub fn hmac(alg: Algorithm, secret: &str, claims: &Value) -> String {
        encode(
            &Header::new(alg),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("encode HMAC token")
    }

    /// A valid HS256 token (secret [`SECRET`]) for `sub`, valid for an hour.
    pub fn user(sub: &str) -> String {
        hs256(SECRET, &json!({"sub": sub, "exp": now() + 3600}))
    }

    /// A valid HS256 token for `sub` in application `iss`.
    pub fn user_in(sub: &str, iss: &str) -> String {
        hs256(
            SECRET,
            &json!({"sub": sub, "iss": iss, "exp": now() + 3600}),
        )
    }

    /// An unsigned token (`alg: none`) over `claims`.
    pub fn alg_none(claims: &Value) -> String {
        format!(
            "{}.{}.",
            b64url(br#"{"alg":"none","typ":"JWT"}"#),
            b64url(claims.to_string().as_bytes())
        )
    }

    /// Base64url without padding.
    pub fn b64url(bytes: &[u8]) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            let chars = chunk.len() + 1;
            for i in 0..chars {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum KeyKind {
        Rsa,
        EcP256,
        EcP384,
        Ed25519,
    }

    /// A key pair made by the `openssl` CLI: PKCS#8 private PEM, SPKI public PEM.
    #[derive(Debug, Clone)]
    pub struct KeyPair {
        pub kind: KeyKind,
        pub private_pem: String,
        pub public_pem: String,
    }

    impl KeyPair {
        /// Generates a fresh key pair with `openssl genpkey` / `openssl pkey`.
        pub fn generate(kind: KeyKind) -> KeyPair {
            let dir = TempDir::new("keys");
            let private = dir.join("private.pem");
            let public = dir.join("public.pem");
            let mut gen = Command::new("openssl");
            gen.arg("genpkey");
            match kind {
                KeyKind::Rsa => gen.args(["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
                KeyKind::EcP256 => {
                    gen.args(["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"])
                }
                KeyKind::EcP384 => {
                    gen.args(["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"])
                }
                KeyKind::Ed25519 => gen.args(["-algorithm", "ED25519"]),
            };
            gen.arg("-out").arg(&private);
            run_openssl(&mut gen);
            let mut pubout = Command::new("openssl");
            pubout
                .args(["pkey", "-pubout", "-in"])
                .arg(&private)
                .arg("-out")
                .arg(&public);
            run_openssl(&mut pubout);
            KeyPair {
                kind,
                private_pem: std::fs::read_to_string(&private).expect("read private key"),
                public_pem: std::fs::read_to_string(&public).expect("read public key"),
            }
        }

        /// One key pair of `kind` per test binary (RSA generation is slow).
        pub fn shared(kind: KeyKind) -> &'static KeyPair {
            static RSA: OnceLock<KeyPair> = OnceLock::new();
            static P256: OnceLock<KeyPair> = OnceLock::new();
            static P384: OnceLock<KeyPair> = OnceLock::new();
            static ED: OnceLock<KeyPair> = OnceLock::new();
            let cell = match kind {
                KeyKind::Rsa => &RSA,
                KeyKind::EcP256 => &P256,
                KeyKind::EcP384 => &P384,
                KeyKind::Ed25519 => &ED,
            };
            cell.get_or_init(|| KeyPair::generate(kind))
        }

        pub fn encoding_key(&self) -> EncodingKey {
            let pem = self.private_pem.as_bytes();
            match self.kind {
                KeyKind::Rsa => EncodingKey::from_rsa_pem(pem),
                KeyKind::EcP256 | KeyKind::EcP384 => EncodingKey::from_ec_pem(pem),
                KeyKind::Ed25519 => EncodingKey::from_ed_pem(pem),
            }
            .expect("private PEM loads")
        }

        /// The natural algorithm of this key.
        pub fn default_alg(&self) -> Algorithm {
            match self.kind {
                KeyKind::Rsa => Algorithm::RS256,
                KeyKind::EcP256 => Algorithm::ES256,
                KeyKind::EcP384 => Algorithm::ES384,
                KeyKind::Ed25519 => Algorithm::EdDSA,
            }
        }

        /// A token over `claims` signed with `alg`.
        pub fn sign_with(&self, alg: Algorithm, claims: &Value) -> String {
            encode(&Header::new(alg), claims, &self.encoding_key()).expect("sign token")
        }

        /// A token over `claims` signed with [`KeyPair::default_alg`].
        pub fn sign(&self, claims: &Value) -> String {
            self.sign_with(self.default_alg(), claims)
        }

        /// Writes the public PEM to `dir/name` and returns the path.
        pub fn write_public(&self, dir: &Path, name: &str) -> std::path::PathBuf {
            let p = dir.join(name);
            std::fs::write(&p, &self.public_pem).expect("write public key");
            p
        }
    }

    fn run_openssl(cmd: &mut Command) {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("the openssl CLI is needed to make test keys: {e}"));
        assert!(
            out.status.success(),
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// ----- Redis --------------------------------------------------------------------

/// A RESP value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Resp>>),
}

impl Resp {
    /// The value as text (simple or bulk string).
    pub fn as_str(&self) -> Option<String> {
        match self {
            Resp::Simple(s) => Some(s.clone()),
            Resp::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
}

/// Sends one command to Redis at `addr` and returns its reply (5 s bounds).
pub fn redis_cmd(addr: SocketAddr, args: &[&str]) -> io::Result<Resp> {
    let stream = connect(addr)?;
    let mut conn = RedisConn {
        reader: Reader::new(stream),
    };
    conn.cmd(args)
}

/// One open RESP connection (for several commands in a row).
pub struct RedisConn {
    reader: Reader,
}

impl RedisConn {
    pub fn open(addr: SocketAddr) -> io::Result<RedisConn> {
        Ok(RedisConn {
            reader: Reader::new(connect(addr)?),
        })
    }

    pub fn cmd(&mut self, args: &[&str]) -> io::Result<Resp> {
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a.as_bytes());
            req.extend_from_slice(b"\r\n");
        }
        self.reader.stream.write_all(&req)?;
        let deadline = Instant::now() + Duration::from_secs(5);
        self.read_value(deadline)
    }

    fn line(&mut self, deadline: Instant) -> io::Result<String> {
        loop {
            if let Some(i) = find(&self.reader.buf, b"\r\n") {
                let line = String::from_utf8_lossy(&self.reader.buf[..i]).into_owned();
                self.reader.buf.drain(..i + 2);
                return Ok(line);
            }
            self.more(deadline)?;
        }
    }

    fn more(&mut self, deadline: Instant) -> io::Result<()> {
        match self.reader.fill(deadline)? {
            Fill::Data => Ok(()),
            Fill::Eof => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "redis closed")),
            Fill::Timeout => Err(io::Error::new(io::ErrorKind::TimedOut, "redis reply")),
        }
    }

    fn read_value(&mut self, deadline: Instant) -> io::Result<Resp> {
        let line = self.line(deadline)?;
        let bad = || io::Error::new(io::ErrorKind::InvalidData, format!("RESP {line:?}"));
        let (kind, rest) = line.split_at(1.min(line.len()));
        Ok(match kind {
            "+" => Resp::Simple(rest.to_string()),
            "-" => Resp::Error(rest.to_string()),
            ":" => Resp::Int(rest.parse().map_err(|_| bad())?),
            "$" => {
                let n: i64 = rest.parse().map_err(|_| bad())?;
                if n < 0 {
                    Resp::Bulk(None)
                } else {
                    let n = n as usize;
                    while self.reader.buf.len() < n + 2 {
                        self.more(deadline)?;
                    }
                    let b: Vec<u8> = self.reader.buf.drain(..n).collect();
                    self.reader.buf.drain(..2);
                    Resp::Bulk(Some(b))
                }
            }
            "*" => {
                let n: i64 = rest.parse().map_err(|_| bad())?;
                if n < 0 {
                    Resp::Array(None)
                } else {
                    let mut items = Vec::with_capacity(n as usize);
                    for _ in 0..n {
                        items.push(self.read_value(deadline)?);
                    }
                    Resp::Array(Some(items))
                }
            }
            _ => return Err(bad()),
        })
    }
}

/// A throwaway `redis-server` on a free loopback port, no persistence.
/// Killed (our child only) and reaped on drop.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    dir: TempDir,
    starts: u32,
}

impl RedisServer {
    /// Starts `redis-server` and waits for `PING`. Panics with a clear
    /// message when `redis-server` is not installed: Redis tests must fail,
    /// not pass silently.
    pub fn start() -> RedisServer {
        let mut r = RedisServer {
            port: free_port(),
            child: None,
            dir: TempDir::new("redis"),
            starts: 0,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "redis-server already running");
        self.starts += 1;
        let log_path = self.dir.join(&format!("redis-{}.log", self.starts));
        let log = File::create(&log_path).expect("create redis log");
        let spawned = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup redis log"))
            .stderr(log)
            .spawn();
        let child = match spawned {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::NotFound => panic!(
                "redis-server is not installed (not on PATH): the Redis integration tests \
                 need it; install it (e.g. `apt-get install redis-server`)"
            ),
            Err(e) => panic!("cannot start redis-server: {e}"),
        };
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                panic!(
                    "redis-server exited with {status}: {}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            if let Ok(r) = redis_cmd(self.addr(), &["PING"]) {
                if r.as_str().as_deref() == Some("PONG") {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "redis-server did not answer PING within {START_TIMEOUT:?}: {}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Stops the server (our child, SIGKILL) and reaps it: an outage.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port (after [`RedisServer::stop`]); its
    /// data is gone (no persistence).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Runs one command; panics on transport errors.
    pub fn cmd(&self, args: &[&str]) -> Resp {
        redis_cmd(self.addr(), args).unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }

    /// `PUBLISH channel message`; returns the number of subscribers reached.
    pub fn publish(&self, channel: &str, message: &str) -> i64 {
        match self.cmd(&["PUBLISH", channel, message]) {
            Resp::Int(n) => n,
            other => panic!("PUBLISH answered {other:?}"),
        }
    }

    /// `XADD stream * envelope <envelope>`; returns the entry id.
    pub fn xadd(&self, stream: &str, envelope: &str) -> String {
        self.cmd(&["XADD", stream, "*", "envelope", envelope])
            .as_str()
            .unwrap_or_else(|| panic!("XADD {stream} did not return an id"))
    }

    /// Waits (bounded) until `channel` has at least one subscriber.
    pub fn wait_subscribers(&self, channel: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if let Resp::Array(Some(v)) = self.cmd(&["PUBSUB", "NUMSUB", channel]) {
                if matches!(v.get(1), Some(Resp::Int(n)) if *n > 0) {
                    return true;
                }
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
