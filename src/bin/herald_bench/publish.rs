//! Publishing benchmark events: herald's `POST /publish` (an envelope), an
//! nchan publisher location (the raw message as the body), or Redis
//! `PUBLISH <channel> <envelope>` over a raw RESP connection.
//!
//! HTTP publishes use one short-lived connection each (herald's admin
//! listener answers one request per connection); Redis keeps one connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::args::{PubKind, PubTarget};

/// A server that takes longer than this to accept a publish has failed it.
/// (Generous: nchan answers a publish only after its fan-out, seconds at 1M.)
const IO_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Publisher {
    target: PubTarget,
    redis: Option<BufReader<TcpStream>>,
}

impl Publisher {
    pub fn new(target: PubTarget) -> Self {
        Self {
            target,
            redis: None,
        }
    }

    /// Publishes `message` to every listener (`to` = `None`) or to users
    /// `u<i>` for each `i` in `to`.
    pub fn publish(&mut self, message: &str, to: Option<&[u64]>) -> Result<(), String> {
        match self.target.kind {
            PubKind::Nchan => self.http_post(message.as_bytes()),
            PubKind::Herald => self.http_post(envelope(message, to).as_bytes()),
            PubKind::Redis => {
                let result = self.redis_publish(&envelope(message, to));
                if result.is_err() {
                    self.redis = None; // reconnect on the next publish
                }
                result
            }
        }
    }

    fn http_post(&self, body: &[u8]) -> Result<(), String> {
        let t = &self.target;
        let mut s = connect(t)?;
        let auth = t
            .token
            .as_ref()
            .map(|tok| format!("Authorization: Bearer {tok}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n{auth}\r\n",
            t.path,
            t.host,
            body.len()
        );
        let mut req = head.into_bytes();
        req.extend_from_slice(body);
        s.write_all(&req).map_err(|e| format!("publish: {e}"))?;
        let mut reply = Vec::with_capacity(256);
        s.read_to_end(&mut reply)
            .map_err(|e| format!("publish: reading the reply: {e}"))?;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&reply) {
            Ok(httparse::Status::Complete(_)) => match resp.code {
                Some(code) if (200..300).contains(&code) => Ok(()),
                code => Err(format!(
                    "publish: HTTP {}: {}",
                    code.unwrap_or(0),
                    String::from_utf8_lossy(&reply).lines().last().unwrap_or("")
                )),
            },
            _ => Err("publish: malformed HTTP reply".into()),
        }
    }

    fn redis_publish(&mut self, envelope: &str) -> Result<(), String> {
        if self.redis.is_none() {
            self.redis = Some(BufReader::new(connect(&self.target)?));
        }
        let conn = self.redis.as_mut().expect("connected above");
        let channel = &self.target.channel;
        let mut cmd = format!(
            "*3\r\n$7\r\nPUBLISH\r\n${}\r\n{channel}\r\n${}\r\n",
            channel.len(),
            envelope.len()
        )
        .into_bytes();
        cmd.extend_from_slice(envelope.as_bytes());
        cmd.extend_from_slice(b"\r\n");
        conn.get_mut()
            .write_all(&cmd)
            .map_err(|e| format!("redis PUBLISH: {e}"))?;
        let mut line = String::new();
        conn.read_line(&mut line)
            .map_err(|e| format!("redis PUBLISH reply: {e}"))?;
        match line.strip_prefix(':') {
            Some(_) => Ok(()),
            None => Err(format!("redis PUBLISH: {}", line.trim_end())),
        }
    }
}

fn connect(t: &PubTarget) -> Result<TcpStream, String> {
    let s = TcpStream::connect_timeout(&t.addr, IO_TIMEOUT)
        .map_err(|e| format!("publish: connect {}: {e}", t.addr))?;
    let _ = s.set_nodelay(true);
    s.set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(|e| format!("publish: {e}"))?;
    Ok(s)
}

/// herald's envelope: the message, unnamed, to everyone or to `u<i>` users.
fn envelope(message: &str, to: Option<&[u64]>) -> String {
    let mut v = serde_json::json!({ "message": message });
    if let Some(to) = to {
        v["to"] = to.iter().map(|i| format!("u{i}")).collect();
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::envelope;

    #[test]
    fn envelopes() {
        assert_eq!(envelope("{\"t\":1}", None), r#"{"message":"{\"t\":1}"}"#);
        let v: serde_json::Value = serde_json::from_str(&envelope("m", Some(&[3, 9]))).unwrap();
        assert_eq!(v["to"], serde_json::json!(["u3", "u9"]));
    }
}
