//! Command-line options, parsed and validated once; the coordinator splits
//! them into per-worker [`super::proto::Plan`]s.
//!
//! This file holds [`USAGE`], the option types and [`parse`] (flags, defaults
//! and the checks across options); `values` parses single values (URLs,
//! source ranges, numbers, durations).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::probe::Audience;

#[cfg(test)]
mod tests;
mod values;

use values::{duration, number, parse_http_url, parse_pub, parse_src};

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
    --jwt-apps K           spread the minted tokens over K apps (iss = app<i mod K>);
                           0 = no iss (app `default`) [default: 0]
    --token-in query|header  where the JWT goes [default: query]
    --header 'Name: value' extra request header (repeatable), e.g. a fixed token
    --connect-timeout D    per-connection limit from connect() to the response head [default: 10s]
    --procs auto|K         client processes; auto = enough for the 20000-fd limit [default: auto]
    --follow               a stream the server ends reconnects with Last-Event-ID after the
                           last `retry:` it sent (3 s if none), as an EventSource does
                           (a server drain); failed attempts back off as in a storm
    --hold D               keep everything open this long once connected
                           [default: 10s for connect, 1s otherwise]

EVENTS (fanout, storm):
    --pub URL              http://HOST:PORT/PATH (herald admin /publish, or an nchan
                           publisher location) or redis://HOST:PORT
    --pub-kind herald|nchan|redis|redis-stream|kafka
                           redis: PUBLISH to --redis-channel; redis-stream: XADD to
                           --redis-stream [default: redis for redis://, else herald]
    --pub-token T          bearer token for POST /publish
    --redis-channel C      [default: herald]
    --redis-stream KEY     [default: herald-stream]
    --kafka-topic T        (--pub kafka://HOST:PORT) records go to partition 0 of T
                           [default: herald]
    --events M             events to publish [default: 10]
    --event-rate R         events per second [default: 10]
    --to all|random:K      broadcast, or K random users per event [default: all]
    --broadcast-every N    (random:K) every Nth event is a broadcast instead [default: 0 = none]
    --seed S               seed for random targets [default: 1]
    --drain D              wait at most this long after the last publish [default: 10s]
    --storm-after K        (storm) drop and reconnect after K events [default: events/4]
    --away D               (storm) stay away this long before reconnecting [default: 0s]

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
    /// A Kafka record on partition 0 of `--kafka-topic`.
    Kafka,
}

/// Where events are published.
#[derive(Clone, Debug)]
pub struct PubTarget {
    pub kind: PubKind,
    pub addr: SocketAddr,
    pub host: String,
    pub path: String,
    pub token: Option<String>,
    /// The Pub/Sub channel, the stream key or the Kafka topic.
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
    /// Apps the minted tokens are spread over (0: no `iss`).
    pub jwt_apps: u64,
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
    pub away: Duration,
    pub follow: bool,
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
        jwt_apps: 0,
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
        away: Duration::ZERO,
        follow: false,
        server_pids: Vec::new(),
        json: false,
        json_file: None,
        deadline: Duration::from_secs(600),
        min_available_kb: 1024 * 1024,
    };
    let (mut pub_url, mut pub_kind, mut pub_token) = (None, None, None);
    let (mut channel, mut stream) = ("herald".to_string(), "herald-stream".to_string());
    let mut topic = "herald".to_string();
    let (mut to, mut seed, mut storm_after) = ("all".to_string(), 1u64, None);
    let mut every = 0u64;
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
            "--jwt-apps" => o.jwt_apps = number(flag, &value()?)?,
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
                    "kafka" => PubKind::Kafka,
                    other => {
                        return Err(format!(
                            "--pub-kind: herald, nchan, redis, redis-stream or kafka, not {other:?}"
                        ))
                    }
                })
            }
            "--pub-token" => pub_token = Some(value()?),
            "--redis-channel" => channel = value()?,
            "--redis-stream" => stream = value()?,
            "--kafka-topic" => topic = value()?,
            "--events" => o.events = number(flag, &value()?)?,
            "--event-rate" => o.event_rate = number(flag, &value()?)?,
            "--to" => to = value()?,
            "--seed" => seed = number(flag, &value()?)?,
            "--drain" => o.drain = duration(flag, &value()?)?,
            "--storm-after" => storm_after = Some(number(flag, &value()?)?),
            "--away" => o.away = duration(flag, &value()?)?,
            "--broadcast-every" => every = number(flag, &value()?)?,
            "--server-pid" => {
                for p in value()?.split(',').filter(|p| !p.is_empty()) {
                    o.server_pids.push(number(flag, p)?);
                }
            }
            "--json" => o.json = true,
            "--follow" => o.follow = true,
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
            Some(Ok(k)) if k > 0 => Audience::Random { k, seed, every },
            _ => return Err(format!("--to: all or random:K (K > 0), not {t:?}")),
        },
    };
    if every > 0 && o.audience == Audience::All {
        return Err("--broadcast-every mixes broadcasts into --to random:K".into());
    }
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
        } else if url.starts_with("kafka://") {
            PubKind::Kafka
        } else {
            PubKind::Herald
        });
        let key = match kind {
            PubKind::RedisStream => stream,
            PubKind::Kafka => topic,
            _ => channel,
        };
        o.publisher = Some(parse_pub(&url, kind, pub_token, key)?);
        if kind == PubKind::Nchan && o.audience != Audience::All {
            return Err("--pub-kind nchan publishes to one channel: use --to all".into());
        }
    }
    Ok(o)
}
