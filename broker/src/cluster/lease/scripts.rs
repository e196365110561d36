//! The lease's Lua scripts, each on the one key `fleetmq:vehicle:{id}` (so they run on Redis
//! Cluster too), and the reading of their replies. The fenced write and the release are
//! [`crate::persist::fence::FENCED_WRITE`].
//!
//! Times are Redis's own clock (`TIME`), so nodes' clocks never have to agree. An epoch is
//! `max(previous epoch + 1, Redis time in ms)`: it grows per vehicle even when the hash expired
//! and was made anew.

use redis::Value;

use crate::persist::fence::Lua;

/// `KEYS` = vehicle keys (one hash slot on a Redis Cluster); `ARGV` = node, lease ms, state TTL
/// ms, "force". Takes each key's lease when it is free, expired, already this node's (then the
/// epoch is kept: a second connection of the same vehicle on this node must not fence the first
/// one's writes out), or when forced (its holder is gone). Replies per key `{1, epoch,
/// tracker|false, state|false}` or `{0, owner, ms left}` ([`Acquired::read_each`]). Many keys
/// per call when many vehicles arrive at once (`batch`).
pub static ACQUIRE: Lua = Lua::new(
    r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i, key in ipairs(KEYS) do
  local f = redis.call('HMGET', key, 'lease_owner', 'lease_epoch', 'lease_until', 'tracker', 'state')
  local owner, epoch, till = f[1], tonumber(f[2] or '0'), tonumber(f[3] or '0')
  local live = owner and till > now
  if live and owner ~= ARGV[1] and ARGV[4] ~= 'force' then
    out[i] = {0, owner, till - now}
  else
    if not (live and owner == ARGV[1]) then
      epoch = math.max(epoch + 1, now)
    end
    redis.call('HSET', key, 'lease_owner', ARGV[1], 'lease_epoch', string.format('%.0f', epoch),
      'lease_until', string.format('%.0f', now + tonumber(ARGV[2])))
    if redis.call('PTTL', key) < 0 then redis.call('PEXPIRE', key, ARGV[3]) end
    out[i] = {1, epoch, f[4] or false, f[5] or false}
  end
end
return out
",
);

/// `KEYS` = vehicle keys (one hash slot on a Redis Cluster); `ARGV` = node, lease ms, then the
/// epoch of each key. Extends each lease that is still this node's under its epoch (also after
/// it ran out while Redis was unreachable: nobody took it, or the epoch would have changed).
/// Replies one 1 (renewed) or 0 (lost) per key. One call renews many leases: a script call per
/// lease per second cost Redis about as much as the vehicle's state write.
pub static RENEW: Lua = Lua::new(
    r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local till = string.format('%.0f', now + tonumber(ARGV[2]))
local out = {}
for i, key in ipairs(KEYS) do
  local f = redis.call('HMGET', key, 'lease_owner', 'lease_epoch')
  if f[1] == ARGV[1] and f[2] == ARGV[i + 2] then
    redis.call('HSET', key, 'lease_until', till)
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
",
);

/// What [`ACQUIRE`] answered.
#[derive(Debug, PartialEq)]
pub enum Acquired {
    /// Ours, under this epoch, with the vehicle's stored tracker and state (JSON).
    Got {
        epoch: u64,
        tracker: Option<Vec<u8>>,
        state: Option<Vec<u8>>,
    },
    /// Another node's lease, valid for this many more milliseconds.
    Held { owner: String, left_ms: u64 },
}

impl Acquired {
    /// Reads the script's reply; `None` for anything else.
    pub fn read(reply: &[Value]) -> Option<Acquired> {
        let int = |v: &Value| match v {
            Value::Int(i) => u64::try_from(*i).ok(),
            _ => None,
        };
        let bytes = |v: &Value| match v {
            Value::BulkString(b) => Some(b.clone()),
            _ => None,
        };
        match reply {
            [Value::Int(1), epoch, tracker, state] => Some(Acquired::Got {
                epoch: int(epoch)?,
                tracker: bytes(tracker),
                state: bytes(state),
            }),
            [Value::Int(0), owner, left] => Some(Acquired::Held {
                owner: String::from_utf8(bytes(owner)?).ok()?,
                left_ms: int(left)?,
            }),
            _ => None,
        }
    }
}

impl Acquired {
    /// Reads [`ACQUIRE`]'s reply for `n` keys: one answer per key, in order (`None` for one not
    /// understood, and for every key of a reply that is not an array).
    pub fn read_each(reply: &Value, n: usize) -> Vec<Option<Acquired>> {
        let mut out: Vec<Option<Acquired>> = match reply {
            Value::Array(each) => each
                .iter()
                .take(n)
                .map(|v| match v {
                    Value::Array(one) => Acquired::read(one),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        out.resize_with(n, || None);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read() {
        let got = [
            Value::Int(1),
            Value::Int(1_764_550_000_123),
            Value::BulkString(b"{}".to_vec()),
            Value::Nil,
        ];
        assert_eq!(
            Acquired::read(&got),
            Some(Acquired::Got {
                epoch: 1_764_550_000_123,
                tracker: Some(b"{}".to_vec()),
                state: None
            })
        );
        let held = [
            Value::Int(0),
            Value::BulkString(b"node-b".to_vec()),
            Value::Int(4200),
        ];
        assert_eq!(
            Acquired::read(&held),
            Some(Acquired::Held {
                owner: "node-b".into(),
                left_ms: 4200
            })
        );
        assert_eq!(Acquired::read(&[Value::Okay]), None);
        // Many keys: one answer each, whatever the reply holds.
        let each = Value::Array(vec![
            Value::Array(got.to_vec()),
            Value::Okay,
            Value::Array(held.to_vec()),
        ]);
        let answers = Acquired::read_each(&each, 4);
        assert_eq!(answers.len(), 4);
        assert!(matches!(answers[0], Some(Acquired::Got { .. })));
        assert_eq!(answers[1], None);
        assert!(matches!(answers[2], Some(Acquired::Held { .. })));
        assert_eq!(answers[3], None, "a key the reply left out");
        assert_eq!(Acquired::read_each(&each, 1).len(), 1);
        assert_eq!(Acquired::read_each(&Value::Nil, 2), vec![None, None]);
    }
}
