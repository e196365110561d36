//! Redis key names (docs/redis.md#keys) and the cluster hash slot of a key.
//!
//! # Key scheme
//! | key | type | written by |
//! |---|---|---|
//! | `fleetmq:vehicle:{id}` | hash: `state` (VehicleState JSON), `tracker` (geo-engine `Tracker` snapshot, binary, filter state included); `PEXPIRE` state TTL; with `--cluster` also the lease: `lease_owner`, `lease_epoch`, `lease_until` | writer, `cluster::lease` |
//! | `fleetmq:geo` | geo set, member `{id}` | writer |
//! | `fleetmq:track:{id}` | stream, entry id `{ts}-0` (device time of the fix), field `state`; `MAXLEN ~ 10000` | writer |
//! | `fleetmq:sos` | stream, `*` ids, fields `vehicle`, `ts`, `payload`, `id`; `MAXLEN ~ 100000` | SOS log |
//! | `fleetmq:lease:release:{node}` | pub/sub channel: vehicle ids the node is asked to release | `cluster::lease` |
//! | `fleetmq:sos:ids` | sorted set of the newest 200000 SOS ids stored, score `ts` | SOS log |
//! | `{fleetmq:sos}:seen` | the same ids, in the slot of `fleetmq:sos` (internal: the SOS script's check) | SOS log |
//!
//! `{id}` is the vehicle id itself, with no braces: these are the names docs/redis.md#keys
//! publishes to integrators, so they stay as written. We deliberately add no hash tag to them: a
//! tag (say `fleetmq:vehicle:{bus-12}`) would put a vehicle's hash and stream in one slot, but
//! would also change the names others read. Nothing needs them co-located: no command and no
//! pipeline touches two of them, and the writer never uses MULTI. The one script, the SOS log's
//! write-once, touches `fleetmq:sos` and a key added for it, `{fleetmq:sos}:seen`, whose hash tag
//! puts it in the stream's slot.
//!
//! # Redis Cluster (`--redis-cluster`)
//! A pipeline must stay within one hash slot (the client refuses one that does not). The writer
//! orders each batch by the [`slot`] of every vehicle's hash key and puts each command in the
//! pipeline of its key's slot: `HSET` + `PEXPIRE` by `fleetmq:vehicle:{id}`, `XADD`s by
//! `fleetmq:track:{id}`, and `GEOADD`/`ZREM` of the single key `fleetmq:geo` in pipelines of their
//! own; the per-slot pipelines go out several at a time on the multiplexed connections. On a
//! single node the same code cuts every 2,000 commands instead. The restore `SCAN`s every master
//! and reads each page with one pipeline per slot.

/// Prefix of the per-vehicle state hashes.
pub const VEHICLE_PREFIX: &str = "fleetmq:vehicle:";
/// SCAN pattern matching every vehicle hash.
pub const VEHICLE_PATTERN: &str = "fleetmq:vehicle:*";
/// Geo set of every vehicle's latest position.
pub const GEO: &str = "fleetmq:geo";
/// Stream of SOS messages.
pub const SOS: &str = "fleetmq:sos";
/// Sorted set of the SOS ids already in [`SOS`] (score: arrival, Unix ms).
pub const SOS_IDS: &str = "fleetmq:sos:ids";
/// Sorted set of the SOS ids already in [`SOS`], in the stream's hash slot (the tag
/// `{fleetmq:sos}` hashes as the untagged name `fleetmq:sos` does), so one script may check it and
/// append to the stream atomically on a Redis Cluster too.
pub const SOS_SEEN: &str = "{fleetmq:sos}:seen";
/// Ids [`SOS_IDS`] and [`SOS_SEEN`] keep, the newest.
pub const SOS_IDS_KEPT: usize = 200_000;
/// Hash fields.
pub const FIELD_STATE: &str = "state";
pub const FIELD_TRACKER: &str = "tracker";
/// Lease fields of the vehicle hash (`--cluster`; the Lua scripts of `persist::fence` and
/// `cluster::lease` spell them out): the node holding it, its fencing epoch, and until when
/// (Redis clock, Unix ms).
pub const FIELD_LEASE_OWNER: &str = "lease_owner";
pub const FIELD_LEASE_EPOCH: &str = "lease_epoch";
pub const FIELD_LEASE_UNTIL: &str = "lease_until";
/// Prefix of each node's release-request channel (`--cluster`), followed by the node id.
pub const LEASE_RELEASE_CHANNEL: &str = "fleetmq:lease:release:";
/// Prefix of each vehicle's track stream, followed by its id.
pub const TRACK_PREFIX: &str = "fleetmq:track:";
/// Approximate length cap of each vehicle's track stream.
pub const TRACK_MAXLEN: usize = 10_000;
/// Approximate length cap of the SOS stream.
pub const SOS_MAXLEN: usize = 100_000;

/// `fleetmq:vehicle:{id}`.
pub fn vehicle(id: &str) -> String {
    // Not `format!`: the writer makes one per vehicle and round, and concatenation sizes the
    // string once.
    [VEHICLE_PREFIX, id].concat()
}

/// `fleetmq:track:{id}`.
pub fn track(id: &str) -> String {
    [TRACK_PREFIX, id].concat()
}

/// A per-vehicle key (`fleetmq:vehicle:{id}`, `fleetmq:track:{id}`) as its two parts: the writer
/// passes it to Redis as one argument without making a `String` of it first (two allocations
/// per vehicle and write round less, and a third for the fenced write's copy of the key).
#[derive(Debug, Clone, Copy)]
pub struct Key<'a> {
    prefix: &'static str,
    id: &'a str,
}

impl<'a> Key<'a> {
    /// `fleetmq:vehicle:{id}`.
    pub fn vehicle(id: &'a str) -> Key<'a> {
        Key {
            prefix: VEHICLE_PREFIX,
            id,
        }
    }

    /// `fleetmq:track:{id}`.
    pub fn track(id: &'a str) -> Key<'a> {
        Key {
            prefix: TRACK_PREFIX,
            id,
        }
    }

    /// Bytes of the whole name.
    pub fn byte_len(&self) -> usize {
        self.prefix.len() + self.id.len()
    }

    /// The key's hash slot, as [`slot`] of the whole name. The prefixes hold no brace, so a
    /// hash tag can only be inside the id, and an untagged name hashes prefix then id.
    pub fn slot(&self) -> u16 {
        let id = self.id.as_bytes();
        match tag(id) {
            Some(tagged) => crc16_from(0, tagged) % SLOTS,
            None => crc16_from(crc16_from(0, self.prefix.as_bytes()), id) % SLOTS,
        }
    }
}

impl std::fmt::Display for Key<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.prefix, self.id)
    }
}

impl redis::ToRedisArgs for Key<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        use std::io::Write as _;
        let mut arg = out.writer_for_next_arg();
        // Writing into the command's own buffer cannot fail.
        let _ = arg.write_all(self.prefix.as_bytes());
        let _ = arg.write_all(self.id.as_bytes());
    }
}

/// The vehicle id of a `fleetmq:vehicle:{id}` key.
pub fn vehicle_id(key: &str) -> Option<&str> {
    key.strip_prefix(VEHICLE_PREFIX).filter(|id| !id.is_empty())
}

/// Number of hash slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// The Redis Cluster hash slot of `key`: CRC16 (XMODEM) of the key, or of its hash tag (the
/// text between the first `{` and the next `}`, when not empty), modulo 16384.
///
/// # References
/// Redis Cluster specification, "Keys distribution model".
pub fn slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    crc16_from(0, tag(bytes).unwrap_or(bytes)) % SLOTS
}

/// The hash tag of a key: what lies between its first `{` and the next `}`, when not empty.
fn tag(key: &[u8]) -> Option<&[u8]> {
    let open = key.iter().position(|&b| b == b'{')?;
    let len = key[open + 1..].iter().position(|&b| b == b'}')?;
    (len > 0).then(|| &key[open + 1..open + 1 + len])
}

/// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0; `crc` carries on from bytes
/// before `data`.
fn crc16_from(mut crc: u16, data: &[u8]) -> u16 {
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_check_value() {
        // The standard check value of CRC16/XMODEM.
        assert_eq!(crc16_from(0, b"123456789"), 0x31C3);
    }

    #[test]
    fn a_keys_parts_hash_and_write_as_its_whole_name() {
        for id in ["bus-12", "{bus}-12", "a{}b", "x{y", "é{ü}z", ""] {
            for (key, name) in [(Key::vehicle(id), vehicle(id)), (Key::track(id), track(id))] {
                assert_eq!(key.slot(), slot(&name), "{name}");
                assert_eq!(key.byte_len(), name.len());
                assert_eq!(key.to_string(), name);
                let args = redis::ToRedisArgs::to_redis_args(&key);
                assert_eq!(args, vec![name.clone().into_bytes()], "one argument");
            }
        }
        assert!(!VEHICLE_PREFIX.contains(['{', '}']) && !TRACK_PREFIX.contains(['{', '}']));
    }

    #[test]
    fn slots_match_redis() {
        // Values given by `CLUSTER KEYSLOT` in the Redis documentation.
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("somekey"), 11058);
        // A hash tag hashes only the tag; an empty tag hashes the whole key.
        assert_eq!(slot("{user1000}.following"), slot("user1000"));
        assert_eq!(slot("foo{}{bar}"), crc16_from(0, b"foo{}{bar}") % SLOTS);
    }

    #[test]
    fn sos_script_keys_share_a_slot() {
        assert_eq!(slot(SOS_SEEN), slot(SOS));
        assert_ne!(
            slot(SOS_IDS),
            slot(SOS),
            "else the published set could join the script"
        );
    }

    #[test]
    fn key_names() {
        assert_eq!(vehicle("bus-12"), "fleetmq:vehicle:bus-12");
        assert_eq!(track("bus-12"), "fleetmq:track:bus-12");
        assert_eq!(vehicle_id("fleetmq:vehicle:bus-12"), Some("bus-12"));
        assert_eq!(vehicle_id("fleetmq:vehicle:"), None);
        assert_eq!(vehicle_id("other"), None);
    }
}
