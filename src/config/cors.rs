//! `CORS_ALLOWED_ORIGINS` entries (SPEC §6): `*`, or origins as browsers
//! send them in the `Origin` header, `scheme://host[:port]`.
//!
//! Contract: every entry is checked, and the first that a browser could
//! never send (no scheme, a path, a query, user info, `null`, a bad port) is
//! refused with a message naming it, so a typo stops start-up (exit 2)
//! instead of silently matching nothing. Accepted origins are normalised as
//! browsers serialise them (scheme and host lower-cased, the scheme's default
//! port dropped), because matching is exact.

use super::Cors;

/// The policy for the listed `entries` (already split on commas and
/// trimmed); `Err` names the first bad entry and why.
pub(super) fn parse(entries: Vec<String>) -> Result<Cors, String> {
    let mut origins = Vec::with_capacity(entries.len());
    let mut any = false;
    for entry in entries {
        if entry == "*" {
            any = true;
        } else {
            origins.push(origin(&entry)?);
        }
    }
    Ok(if any || origins.is_empty() {
        Cors::Any
    } else {
        Cors::List(origins)
    })
}

/// One origin, normalised.
fn origin(entry: &str) -> Result<String, String> {
    let bad = |why: &str| {
        format!(
            "{entry:?} is not an origin ({why}); expected `*` or scheme://host[:port], \
             e.g. https://app.example.com"
        )
    };
    let Some((scheme, rest)) = entry.split_once("://") else {
        return Err(bad("no scheme://"));
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return Err(bad("bad scheme"));
    }
    if let Some(c) = rest.chars().find(|c| matches!(c, '/' | '?' | '#')) {
        return Err(bad(&format!(
            "an origin has no path, query or fragment ({c:?})"
        )));
    }
    if rest.contains('@') {
        return Err(bad("an origin has no user info"));
    }
    let (host, port) = split_port(rest).map_err(|e| bad(&e))?;
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            })
    };
    if !host_ok {
        return Err(bad("bad host"));
    }
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    };
    let mut out = format!("{scheme}://{}", host.to_ascii_lowercase());
    if let Some(p) = port.filter(|p| Some(*p) != default_port) {
        out.push_str(&format!(":{p}"));
    }
    Ok(out)
}

/// `host[:port]` (an IPv6 host in brackets) into the host and the port.
fn split_port(rest: &str) -> Result<(&str, Option<u16>), String> {
    let colon = match rest.rfind(':') {
        Some(i) if !rest[i..].contains(']') => i,
        _ => return Ok((rest, None)),
    };
    let (host, port) = (&rest[..colon], &rest[colon + 1..]);
    match port.parse::<u16>() {
        Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok((host, Some(p))),
        _ => Err(format!("bad port {port:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> Result<Cors, String> {
        parse(entries.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn star_and_proper_origins_are_accepted_and_normalised() {
        assert_eq!(list(&[]), Ok(Cors::Any));
        assert_eq!(list(&["*"]), Ok(Cors::Any));
        assert_eq!(
            list(&[
                "https://App.Example.com",
                "http://localhost:3000",
                "https://a.example:443",
                "http://[::1]:8080",
                "chrome-extension://abcdef",
            ]),
            Ok(Cors::List(vec![
                "https://app.example.com".into(),
                "http://localhost:3000".into(),
                "https://a.example".into(),
                "http://[::1]:8080".into(),
                "chrome-extension://abcdef".into(),
            ]))
        );
    }

    #[test]
    fn what_a_browser_never_sends_is_refused_by_name() {
        for bad in [
            "not a url",
            "app.example.com",
            "https://app.example.com/",
            "https://app.example.com/path",
            "https://app.example.com?x=1",
            "https://user@app.example.com",
            "https://app.example.com:0",
            "https://app.example.com:99999",
            "https://app.example.com:",
            "https://",
            "https://bad host",
            "https://a..b",
            "null",
            "1http://x",
        ] {
            let e = list(&[bad]).expect_err(bad);
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
        // A bad entry next to `*` is still a mistake.
        assert!(list(&["*", "not a url"]).is_err());
    }
}
