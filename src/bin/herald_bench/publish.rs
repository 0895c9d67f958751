//! Publishing benchmark events: herald's `POST /publish` (an envelope), an
//! nchan publisher location (the raw message as the body), or Redis
//! `PUBLISH <channel> <envelope>` / `XADD <key> * envelope <envelope>` over a
//! raw RESP connection.
//!
//! or a Kafka record (`kafka://`, partition 0 of the topic, one produce
//! request each, through `rskafka` on a small runtime of its own).
//!
//! HTTP publishes use one short-lived connection each (herald's admin
//! listener answers one request per connection); Redis and Kafka keep one
//! connection.

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
    kafka: Option<super::kafka::Producer>,
}

impl Publisher {
    pub fn new(target: PubTarget) -> Self {
        Self {
            target,
            redis: None,
            kafka: None,
        }
    }

    /// Publishes `message` to every listener (`to` = `None`) or to users
    /// `u<i>` for each `i` in `to`.
    pub fn publish(&mut self, message: &str, to: Option<&[u64]>) -> Result<(), String> {
        match self.target.kind {
            PubKind::Nchan => self.http_post(message.as_bytes()),
            PubKind::Herald => self.http_post(envelope(message, to).as_bytes()),
            PubKind::Kafka => {
                if self.kafka.is_none() {
                    let t = &self.target;
                    self.kafka = Some(super::kafka::Producer::connect(&t.addr, &t.key)?);
                }
                let producer = self.kafka.as_mut().expect("connected above");
                let result = producer.produce(envelope(message, to).into_bytes());
                if result.is_err() {
                    self.kafka = None;
                }
                result
            }
            PubKind::Redis | PubKind::RedisStream => {
                let env = envelope(message, to);
                let key = self.target.key.clone();
                let result = match self.target.kind {
                    PubKind::Redis => self.redis_command(&["PUBLISH", &key, &env]),
                    _ => self.redis_command(&["XADD", &key, "*", "envelope", &env]),
                };
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

    /// Sends one command and reads its reply (integer, bulk string or status).
    fn redis_command(&mut self, args: &[&str]) -> Result<(), String> {
        if self.redis.is_none() {
            self.redis = Some(BufReader::new(connect(&self.target)?));
        }
        let conn = self.redis.as_mut().expect("connected above");
        let mut cmd = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            cmd.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
        }
        let what = args[0];
        conn.get_mut()
            .write_all(&cmd)
            .map_err(|e| format!("redis {what}: {e}"))?;
        let mut line = String::new();
        conn.read_line(&mut line)
            .map_err(|e| format!("redis {what} reply: {e}"))?;
        match line.as_bytes().first() {
            Some(b':' | b'+') => Ok(()),
            Some(b'$') => {
                // A bulk string (XADD's id): its data line follows.
                line.clear();
                conn.read_line(&mut line)
                    .map(drop)
                    .map_err(|e| format!("redis {what} reply: {e}"))
            }
            _ => Err(format!("redis {what}: {}", line.trim_end())),
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
