//! Parsers for single option values: the `--pub` target, `http://` URLs,
//! `--src` address ranges, numbers (with `_` separators) and durations.
//!
//! Contract: each returns `Err` with a message naming the flag or the value,
//! ready for `herald-bench: …`; the `http://` host is resolved here.

use std::net::{Ipv4Addr, ToSocketAddrs};
use std::time::Duration;

use super::{HttpUrl, PubKind, PubTarget};

pub(super) fn parse_pub(
    url: &str,
    kind: PubKind,
    token: Option<String>,
    key: String,
) -> Result<PubTarget, String> {
    let redis = matches!(kind, PubKind::Redis | PubKind::RedisStream);
    let http = match (redis, url.strip_prefix("redis://")) {
        _ if kind == PubKind::Kafka => {
            let hostport = url
                .strip_prefix("kafka://")
                .ok_or_else(|| format!("--pub-kind kafka needs kafka://HOST:PORT, got {url}"))?;
            parse_http_url(&format!("http://{hostport}/"))?
        }
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
pub(super) fn parse_src(spec: &str) -> Result<Vec<Ipv4Addr>, String> {
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

pub(super) fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
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
