//! Command-line options, parsed and validated once; the coordinator splits
//! them into per-worker [`super::proto::Plan`]s.

use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use super::probe::Audience;

pub const USAGE: &str = "\
herald-bench: capacity benchmark client for herald (and other SSE servers)

USAGE:
    herald-bench connect [OPTIONS]    open N listeners, hold them, report memory and CPU
    herald-bench fanout  [OPTIONS]    ... then publish M events and measure delivery
    herald-bench storm   [OPTIONS]    ... and mid-way drop every listener and reconnect
                                      all with Last-Event-ID while events keep flowing

CONNECTIONS:
    --url URL              SSE endpoint [default: http://127.0.0.1:8080/sse]
    -n, --connections N    listeners to open [default: 1000]
    --src A[-B][,C..]      IPv4 source addresses to spread over (IP_BIND_ADDRESS_NO_PORT),
                           e.g. 127.0.0.2-127.0.0.60, so N can exceed 64K
    --rate R               new connections per second, all processes together
                           [default: 10000; 0 = unlimited]
    --inflight K           handshakes in progress at once, all processes [default: 2000]
    --jwt-secret S         mint an HS256 JWT per connection (sub = u<i>, exp = +1 day)
    --token-in query|header  where the JWT goes [default: query]
    --header 'Name: value' extra request header (repeatable), e.g. a fixed token
    --connect-timeout D    per-connection limit from connect() to the response head [default: 10s]
    --procs auto|K         client processes; auto = enough for the 20000-fd limit [default: auto]
    --hold D               keep everything open this long once connected
                           [default: 10s for connect, 1s otherwise]

EVENTS (fanout, storm):
    --pub URL              http://HOST:PORT/PATH (herald admin /publish, or an nchan
                           publisher location) or redis://HOST:PORT
    --pub-kind herald|nchan|redis|redis-stream
                           redis: PUBLISH to --redis-channel; redis-stream: XADD to
                           --redis-stream [default: redis for redis://, else herald]
    --pub-token T          bearer token for POST /publish
    --redis-channel C      [default: herald]
    --redis-stream KEY     [default: herald-stream]
    --events M             events to publish [default: 10]
    --event-rate R         events per second [default: 10]
    --to all|random:K      broadcast, or K random users per event [default: all]
    --seed S               seed for random targets [default: 1]
    --drain D              wait at most this long after the last publish [default: 10s]
    --storm-after K        (storm) drop and reconnect after K events [default: events/4]

MEASURING AND OUTPUT:
    --server-pid PID[,PID] server processes to sample (repeatable): RSS, CPU;
                           plus /proc/meminfo Slab and /proc/net/sockstat
    --json                 print the report as JSON on stdout (else a summary)
    --json-file PATH       also write the JSON report to PATH
    --deadline D           hard limit for the whole run [default: 600s]
    --min-available MB     stop opening connections when MemAvailable falls below this,
                           so the box (shared with the server) never runs dry [default: 1024]

Durations: 500ms, 10s, 2m, or plain seconds. Progress goes to stderr.
";

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    Connect,
    Fanout,
    Storm,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Connect => "connect",
            Mode::Fanout => "fanout",
            Mode::Storm => "storm",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum TokenIn {
    Query,
    Header,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PubKind {
    Herald,
    Nchan,
    /// `PUBLISH` (Pub/Sub).
    Redis,
    /// `XADD` (Redis streams: one id per event, shared by every herald).
    RedisStream,
}

/// Where events are published.
#[derive(Clone, Debug)]
pub struct PubTarget {
    pub kind: PubKind,
    pub addr: SocketAddr,
    pub host: String,
    pub path: String,
    pub token: Option<String>,
    /// The Pub/Sub channel or the stream key.
    pub key: String,
}

/// An `http://` URL split for a raw HTTP/1.1 client.
#[derive(Clone, Debug)]
pub struct HttpUrl {
    pub addr: SocketAddr,
    /// `Host` header value.
    pub host: String,
    /// Path and query, starting with `/`.
    pub path: String,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub mode: Mode,
    pub url: HttpUrl,
    pub connections: u64,
    pub src: Vec<Ipv4Addr>,
    pub rate: f64,
    pub inflight: u64,
    pub jwt_secret: Option<String>,
    pub token_in: TokenIn,
    pub headers: Vec<String>,
    pub connect_timeout: Duration,
    /// `None` = auto.
    pub procs: Option<usize>,
    pub hold: Duration,
    pub publisher: Option<PubTarget>,
    pub events: u64,
    pub event_rate: f64,
    pub audience: Audience,
    pub drain: Duration,
    pub storm_after: u64,
    pub server_pids: Vec<u32>,
    pub json: bool,
    pub json_file: Option<String>,
    pub deadline: Duration,
    pub min_available_kb: u64,
}

/// Parses `args` (without the program name and mode).
pub fn parse(mode: Mode, args: &[String]) -> Result<Options, String> {
    let mut url = "http://127.0.0.1:8080/sse".to_string();
    let mut o = Options {
        mode,
        url: parse_http_url(&url)?,
        connections: 1000,
        src: Vec::new(),
        rate: 10_000.0,
        inflight: 2000,
        jwt_secret: None,
        token_in: TokenIn::Query,
        headers: Vec::new(),
        connect_timeout: Duration::from_secs(10),
        procs: None,
        hold: Duration::from_secs(if mode == Mode::Connect { 10 } else { 1 }),
        publisher: None,
        events: 10,
        event_rate: 10.0,
        audience: Audience::All,
        drain: Duration::from_secs(10),
        storm_after: 0,
        server_pids: Vec::new(),
        json: false,
        json_file: None,
        deadline: Duration::from_secs(600),
        min_available_kb: 1024 * 1024,
    };
    let (mut pub_url, mut pub_kind, mut pub_token) = (None, None, None);
    let (mut channel, mut stream) = ("herald".to_string(), "herald-stream".to_string());
    let (mut to, mut seed, mut storm_after) = ("all".to_string(), 1u64, None);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--url" => url = value()?,
            "-n" | "--connections" => o.connections = number(flag, &value()?)?,
            "--src" => o.src = parse_src(&value()?)?,
            "--rate" => o.rate = number(flag, &value()?)?,
            "--inflight" => o.inflight = number(flag, &value()?)?,
            "--jwt-secret" => o.jwt_secret = Some(value()?),
            "--token-in" => {
                o.token_in = match value()?.as_str() {
                    "query" => TokenIn::Query,
                    "header" => TokenIn::Header,
                    other => return Err(format!("--token-in: query or header, not {other:?}")),
                }
            }
            "--header" => {
                let h = value()?;
                if !h.contains(':') || h.contains(['\r', '\n']) {
                    return Err(format!("--header {h:?}: expected 'Name: value'"));
                }
                o.headers.push(h);
            }
            "--connect-timeout" => o.connect_timeout = duration(flag, &value()?)?,
            "--procs" => {
                let v = value()?;
                o.procs = if v == "auto" {
                    None
                } else {
                    Some(number::<usize>(flag, &v)?.max(1))
                }
            }
            "--hold" => o.hold = duration(flag, &value()?)?,
            "--pub" => pub_url = Some(value()?),
            "--pub-kind" => {
                pub_kind = Some(match value()?.as_str() {
                    "herald" => PubKind::Herald,
                    "nchan" => PubKind::Nchan,
                    "redis" => PubKind::Redis,
                    "redis-stream" => PubKind::RedisStream,
                    other => {
                        return Err(format!("--pub-kind: herald, nchan or redis, not {other:?}"))
                    }
                })
            }
            "--pub-token" => pub_token = Some(value()?),
            "--redis-channel" => channel = value()?,
            "--redis-stream" => stream = value()?,
            "--events" => o.events = number(flag, &value()?)?,
            "--event-rate" => o.event_rate = number(flag, &value()?)?,
            "--to" => to = value()?,
            "--seed" => seed = number(flag, &value()?)?,
            "--drain" => o.drain = duration(flag, &value()?)?,
            "--storm-after" => storm_after = Some(number(flag, &value()?)?),
            "--server-pid" => {
                for p in value()?.split(',').filter(|p| !p.is_empty()) {
                    o.server_pids.push(number(flag, p)?);
                }
            }
            "--json" => o.json = true,
            "--json-file" => o.json_file = Some(value()?),
            "--deadline" => o.deadline = duration(flag, &value()?)?,
            "--min-available" => o.min_available_kb = number::<u64>(flag, &value()?)? * 1024,
            other => return Err(format!("unknown option {other:?} (see --help)")),
        }
    }
    o.url = parse_http_url(&url)?;
    o.audience = match to.as_str() {
        "all" => Audience::All,
        t => match t.strip_prefix("random:").map(str::parse::<u64>) {
            Some(Ok(k)) if k > 0 => Audience::Random { k, seed },
            _ => return Err(format!("--to: all or random:K (K > 0), not {t:?}")),
        },
    };
    o.storm_after = storm_after.unwrap_or(o.events / 4).min(o.events);
    if o.connections == 0 {
        return Err("-n must be at least 1".into());
    }
    if o.event_rate.is_nan() || o.event_rate <= 0.0 {
        return Err("--event-rate must be above 0".into());
    }
    if o.url.addr.is_ipv6() && !o.src.is_empty() {
        return Err("--src takes IPv4 addresses; the --url host is IPv6".into());
    }
    if mode != Mode::Connect {
        let Some(url) = pub_url else {
            return Err(format!("{} needs --pub URL", mode.name()));
        };
        let kind = pub_kind.unwrap_or(if url.starts_with("redis://") {
            PubKind::Redis
        } else {
            PubKind::Herald
        });
        let key = if kind == PubKind::RedisStream {
            stream
        } else {
            channel
        };
        o.publisher = Some(parse_pub(&url, kind, pub_token, key)?);
        if kind == PubKind::Nchan && o.audience != Audience::All {
            return Err("--pub-kind nchan publishes to one channel: use --to all".into());
        }
    }
    Ok(o)
}

fn parse_pub(
    url: &str,
    kind: PubKind,
    token: Option<String>,
    key: String,
) -> Result<PubTarget, String> {
    let redis = matches!(kind, PubKind::Redis | PubKind::RedisStream);
    let http = match (redis, url.strip_prefix("redis://")) {
        (true, Some(rest)) => {
            // redis://[user:pass@]host:port[/db]: only host:port is used.
            let hostport = rest.split('/').next().unwrap_or(rest);
            if hostport.contains('@') {
                return Err("--pub redis://: credentials are not supported by the bench".into());
            }
            parse_http_url(&format!("http://{hostport}/"))?
        }
        (true, None) => return Err(format!("--pub-kind redis needs redis://, got {url}")),
        (false, Some(_)) => {
            return Err(format!(
                "--pub {url}: redis:// needs --pub-kind redis or redis-stream"
            ))
        }
        (false, None) => parse_http_url(url)?,
    };
    Ok(PubTarget {
        kind,
        addr: http.addr,
        host: http.host,
        path: http.path,
        token,
        key,
    })
}

/// `http://host[:port][/path][?query]`; the host must resolve (loopback in
/// practice).
pub fn parse_http_url(url: &str) -> Result<HttpUrl, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
    let (host, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    let with_port = if host
        .rsplit_once(':')
        .is_some_and(|(h, _)| !h.ends_with(':'))
    {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("{url}: {e}"))?
        .next()
        .ok_or_else(|| format!("{url}: host does not resolve"))?;
    Ok(HttpUrl {
        addr,
        host: host.to_string(),
        path,
    })
}

/// `127.0.0.2-127.0.0.60,127.0.1.1` → every address, in order.
fn parse_src(spec: &str) -> Result<Vec<Ipv4Addr>, String> {
    let mut out = Vec::new();
    for part in spec.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let ip = |s: &str| {
            s.trim()
                .parse::<Ipv4Addr>()
                .map_err(|_| format!("--src: {s:?} is not an IPv4 address"))
        };
        let (a, b) = (u32::from(ip(a)?), u32::from(ip(b)?));
        if b < a || b - a > 1 << 20 {
            return Err(format!("--src: bad range {part:?}"));
        }
        out.extend((a..=b).map(Ipv4Addr::from));
    }
    Ok(out)
}

fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.replace('_', "")
        .parse()
        .map_err(|_| format!("{flag}: {v:?} is not a number"))
}

/// `500ms`, `10s`, `2m`, or plain seconds.
pub fn duration(flag: &str, v: &str) -> Result<Duration, String> {
    let (num, scale) = if let Some(n) = v.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60.0)
    } else {
        (v, 1.0)
    };
    let secs: f64 = number(flag, num)?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("{flag}: {v:?} is not a duration"));
    }
    Ok(Duration::from_secs_f64(secs * scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn urls_sources_durations() {
        let u = parse_http_url("http://127.0.0.1:18080/sse?x=1").unwrap();
        assert_eq!(
            (u.addr.port(), u.host.as_str(), u.path.as_str()),
            (18080, "127.0.0.1:18080", "/sse?x=1")
        );
        assert_eq!(parse_http_url("http://127.0.0.1?a").unwrap().path, "/?a");
        assert_eq!(parse_http_url("http://127.0.0.1").unwrap().addr.port(), 80);
        assert!(parse_http_url("https://x").is_err());
        let s = parse_src("127.0.0.2-127.0.0.4,127.0.1.1").unwrap();
        assert_eq!(s.len(), 4);
        assert_eq!(s[3], Ipv4Addr::new(127, 0, 1, 1));
        assert!(parse_src("127.0.0.9-127.0.0.2").is_err());
        assert_eq!(duration("d", "250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(duration("d", "2m").unwrap(), Duration::from_secs(120));
        assert_eq!(duration("d", "3").unwrap(), Duration::from_secs(3));
        assert!(duration("d", "-1s").is_err());
    }

    #[test]
    fn modes_need_what_they_use() {
        let o = parse(
            Mode::Connect,
            &args("-n 19_000 --procs 2 --server-pid 1,2 --server-pid 3"),
        )
        .unwrap();
        assert_eq!(
            (o.connections, o.procs, o.server_pids.len()),
            (19_000, Some(2), 3)
        );
        assert!(
            parse(Mode::Fanout, &args("-n 5")).is_err(),
            "fanout needs --pub"
        );
        let f = parse(
            Mode::Fanout,
            &args("--pub redis://127.0.0.1:6379 --events 8 --to random:3"),
        )
        .unwrap();
        let p = f.publisher.unwrap();
        assert_eq!((p.kind, p.key.as_str()), (PubKind::Redis, "herald"));
        let x = parse(
            Mode::Fanout,
            &args("--pub redis://127.0.0.1:6379 --pub-kind redis-stream"),
        );
        assert_eq!(x.unwrap().publisher.unwrap().key, "herald-stream");
        assert_eq!(f.audience, Audience::Random { k: 3, seed: 1 });
        let s = parse(
            Mode::Storm,
            &args("--pub http://127.0.0.1:9090/publish --events 8"),
        )
        .unwrap();
        assert_eq!(s.storm_after, 2);
        assert!(parse(
            Mode::Fanout,
            &args("--pub http://127.0.0.1:1/pub --pub-kind nchan --to random:2")
        )
        .is_err());
        assert!(parse(Mode::Connect, &args("--bogus")).is_err());
    }
}
