//! The vocabulary of the connection registry (SPEC §7): connection ids,
//! what a reactor reports about a connection, and the control messages the
//! admin side sends through the inboxes.
//!
//! Contract:
//! - A connection id is a version-4 UUID that carries which reactor, slot
//!   and slot generation the connection lives in, plus a per-process salt
//!   ([`IdCodec`]). So a `DELETE /connections/{id}` goes straight to one
//!   reactor with no index to keep, an id from another process (or a
//!   guessed one) is refused by the salt, and a closed connection's id
//!   never matches its slot's next occupant (the generation differs).
//! - Nothing per connection is stored for the local registry: reactors
//!   answer a listing from their slots and the user index. With the Redis
//!   registry they also send a [`Record`] when a user's stream opens and
//!   closes; the salt doubles as the node's name there ([`IdCodec::node`]),
//!   so any node can tell from an id alone which node holds it.
//! - A listing asked on the public listener is a [`Query`]: the reactor
//!   hands it off and waits for [`Control::Answer`], never blocking.

use crossbeam_channel::Sender;

/// Where a connection lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnRef {
    pub reactor: u16,
    pub slot: u32,
    /// The slot's generation (24 bits).
    pub gen: u32,
}

/// Turns [`ConnRef`]s into UUID strings and back, with this process's salt.
#[derive(Debug, Clone, Copy)]
pub struct IdCodec {
    /// 56 random bits.
    salt: u64,
}

const LOW62: u128 = (1 << 62) - 1;

impl IdCodec {
    /// `seed`: any random bits (the low 56 are used).
    pub fn new(seed: u64) -> Self {
        Self {
            salt: seed & ((1 << 56) - 1),
        }
    }

    /// The id of a connection: 122 payload bits (salt, reactor, generation,
    /// slot) around the UUID's version and variant bits.
    pub fn encode(&self, c: ConnRef) -> uuid::Uuid {
        let p: u128 = (u128::from(self.salt) << 66)
            | (u128::from(c.reactor & 0x3ff) << 56)
            | (u128::from(c.gen & 0x00ff_ffff) << 32)
            | u128::from(c.slot);
        let bits = ((p >> 74) << 80)
            | (0x4 << 76)
            | (((p >> 62) & 0xfff) << 64)
            | (0b10 << 62)
            | (p & LOW62);
        uuid::Uuid::from_u128(bits)
    }

    /// This process's name in the cluster registry: the salt in hex.
    pub fn node(&self) -> String {
        format!("{:014x}", self.salt)
    }

    /// The node an id of any herald process names (its salt in hex), if
    /// the text is shaped like one of herald's ids.
    pub fn node_of(id: &str) -> Option<String> {
        payload(id).map(|p| format!("{:014x}", (p >> 66) as u64))
    }

    /// The connection an id names, if it is one of this process's ids.
    pub fn decode(&self, id: &str) -> Option<ConnRef> {
        let p = payload(id)?;
        if (p >> 66) as u64 != self.salt {
            return None;
        }
        Some(ConnRef {
            reactor: ((p >> 56) & 0x3ff) as u16,
            gen: ((p >> 32) & 0x00ff_ffff) as u32,
            slot: p as u32,
        })
    }
}

/// The 122 payload bits of a v4-shaped UUID.
fn payload(id: &str) -> Option<u128> {
    let bits = uuid::Uuid::parse_str(id).ok()?.as_u128();
    if (bits >> 76) & 0xf != 4 || (bits >> 62) & 0b11 != 0b10 {
        return None;
    }
    Some(((bits >> 80) << 74) | (((bits >> 64) & 0xfff) << 62) | (bits & LOW62))
}

/// One connection as a listing shows it (the seed's JSON shape).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    pub id: String,
    /// Unix seconds.
    pub created_at: u64,
    pub remote_addr: String,
    pub app: Box<str>,
    pub user: Box<str>,
    /// Event frames queued for the stream so far (0 when read from the
    /// Redis registry: only the holding node knows).
    pub events_sent: u64,
    /// Bytes herald holds that the kernel has not taken yet (0 from Redis).
    pub bytes_pending: u64,
}

/// A question or order for one reactor, answered on `reply`.
pub enum Control {
    /// The streaming connections of `user` (or of every user) in `app`
    /// (or in every app: then `user` is not looked at).
    List {
        app: Option<Box<str>>,
        user: Option<Box<str>>,
        reply: Sender<Vec<ConnInfo>>,
    },
    /// End this connection's stream; `true` if it was open.
    Kick { conn: ConnRef, reply: Sender<bool> },
    /// The answer to a [`Query`] this reactor handed off: send it to the
    /// waiting connection and close.
    Answer { conn: ConnRef, response: Vec<u8> },
    /// The registry's verdict on a [`Record::Claim`].
    Admit { conn: ConnRef, admitted: bool },
}

/// A user's stream opened or closed (sent only with the Redis registry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Open(ConnInfo),
    /// Open unless the user already holds `MAX_CONNECTIONS_PER_USER` across
    /// the cluster; the verdict goes back as [`Control::Admit`].
    Claim {
        info: ConnInfo,
        conn: ConnRef,
    },
    Close {
        id: String,
        app: Box<str>,
        user: Box<str>,
    },
    /// This node stops (sent after its reactors ended): remove what is left
    /// of it and its alive key, so that no other node lists it any longer.
    Leave,
}

/// `GET /connections/{app}[/{user}]` asked on the public listener by a
/// client whose token's issuer is `app`; answered off the reactor.
#[derive(Debug)]
pub struct Query {
    pub conn: ConnRef,
    pub app: Box<str>,
    pub user: Option<Box<str>>,
    /// CORS header lines for the answer.
    pub cors: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_as_v4_uuids_and_need_the_salt() {
        let codec = IdCodec::new(0x1234_5678_9abc_def0);
        let c = ConnRef {
            reactor: 1023,
            slot: u32::MAX,
            gen: 0x00ab_cdef,
        };
        let id = codec.encode(c);
        assert_eq!(id.get_version_num(), 4);
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(codec.decode(&id.to_string()), Some(c));
        assert_eq!(IdCodec::node_of(&id.to_string()), Some(codec.node()));
        assert_eq!(codec.node(), "345678_9abc_def0".replace('_', ""));
        assert_eq!(
            IdCodec::new(7).decode(&id.to_string()),
            None,
            "another process"
        );
        assert_eq!(codec.decode(&uuid::Uuid::new_v4().to_string()), None);
        assert_eq!(codec.decode("not-a-uuid"), None);
    }
}
