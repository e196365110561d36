//! The writer's script calls: many vehicles' hash writes, or many track points, in one
//! `EVALSHA` each (docs/redis.md#write-behind).
//!
//! Why scripts and not plain commands: written one command each (`HSET` + `PEXPIRE` per vehicle,
//! `XADD` per track point), a flush of 10,000 updates got 30,000 replies, and decoding them in
//! redis-rs (a parser per reply, a `Value` each, errors mapped) was a tenth of a single node's
//! instructions per update. A call here answers once for up to [`KEYS_PER_CALL`] keys, with
//! the count of what Redis refused; each step runs under `redis.pcall`, so one refused write
//! (a replayed track point, a key of the wrong type) never stops the others of its call.
//!
//! [`Calls`] gathers the keys and arguments of consecutive entries into calls: a call holds
//! keys of one hash slot only (a script's keys must be, on a Redis Cluster), at most
//! [`KEYS_PER_CALL`] keys and about [`BYTES_PER_CALL`] bytes.

use redis::{Cmd, RedisWrite, ToRedisArgs};

use super::fence::Lua;

/// Keys per call: Redis runs one script at a time, so a call stays short (well under a
/// millisecond).
pub const KEYS_PER_CALL: usize = 100;
/// Bytes per call (about 50 vehicles' state and tracker): a call of 100 vehicles was ~250 KB,
/// above the allocator's mmap threshold, so each flush took its command buffers from fresh
/// pages that the kernel zeroed (23 % of a cluster node's CPU in a profile); buffers this
/// small are reused.
pub const BYTES_PER_CALL: usize = 64 * 1024;

/// `KEYS` = `fleetmq:vehicle:{id}` keys; `ARGV` = state TTL ms, then per key its state JSON or
/// "" and its tracker snapshot or "". Writes the non-empty fields and the TTL of each key;
/// returns how many keys Redis refused.
pub static WRITE_MANY: Lua = Lua::new(
    r"
local refused = 0
for i, key in ipairs(KEYS) do
  local state, tracker = ARGV[2 * i], ARGV[2 * i + 1]
  local r
  if state ~= '' and tracker ~= '' then
    r = redis.pcall('HSET', key, 'state', state, 'tracker', tracker)
  elseif state ~= '' then
    r = redis.pcall('HSET', key, 'state', state)
  else
    r = redis.pcall('HSET', key, 'tracker', tracker)
  end
  if type(r) == 'table' and r.err then
    refused = refused + 1
  else
    redis.pcall('PEXPIRE', key, ARGV[1])
  end
end
return refused
",
);

/// `KEYS` = `fleetmq:track:{id}` keys, one per point (a key repeats for several points, in
/// time order); `ARGV` = the streams' approximate length cap, then per key the point's device
/// time (Unix ms, the entry id `{ts}-0`) and its state JSON. Appends each point with
/// `XADD key MAXLEN ~ cap {ts}-0 state json`; returns how many Redis refused (an id not newer
/// than the stream's last: a replayed batch).
pub static TRACK_MANY: Lua = Lua::new(
    r"
local refused = 0
for i, key in ipairs(KEYS) do
  local r = redis.pcall('XADD', key, 'MAXLEN', '~', ARGV[1], ARGV[2 * i] .. '-0', 'state', ARGV[2 * i + 1])
  if type(r) == 'table' and r.err then refused = refused + 1 end
end
return refused
",
);

/// One argument of a call: a number (written as its decimal text) or bytes borrowed from the
/// batch.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    Num(u64),
    Bytes(&'a [u8]),
}

impl Arg<'_> {
    /// Bytes it adds to a command, its length prefix excluded.
    fn len(&self) -> usize {
        match self {
            Arg::Num(_) => 20,
            Arg::Bytes(b) => b.len(),
        }
    }
}

impl ToRedisArgs for Arg<'_> {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        match *self {
            Arg::Num(n) => out.write_arg(itoa::Buffer::new().format(n).as_bytes()),
            Arg::Bytes(b) => out.write_arg(b),
        }
    }
}

/// Script calls being gathered: `EVALSHA sha n key... head... args...`, where `head` is the
/// arguments every call starts with and `args` each key's own, in key order.
pub struct Calls<'a> {
    sha: &'a str,
    head: Vec<Arg<'a>>,
    /// Hash slot of the call being gathered (0 for all keys on a single Redis).
    slot: Option<u16>,
    keys: Vec<String>,
    args: Vec<Arg<'a>>,
    bytes: usize,
    /// Calls closed, with their slot.
    done: Vec<(u16, Cmd)>,
}

impl<'a> Calls<'a> {
    pub fn new(sha: &'a str, head: Vec<Arg<'a>>) -> Calls<'a> {
        Calls {
            sha,
            head,
            slot: None,
            keys: Vec::new(),
            args: Vec::new(),
            bytes: 0,
            done: Vec::new(),
        }
    }

    /// Adds `key` (in hash slot `slot`) with its own arguments; the call being gathered is
    /// closed first when `key` is of another slot or the call is full.
    pub fn add(&mut self, slot: u16, key: String, args: &[Arg<'a>]) {
        let bytes = key.len() + args.iter().map(Arg::len).sum::<usize>();
        if self.slot != Some(slot)
            || self.keys.len() >= KEYS_PER_CALL
            || (self.bytes + bytes > BYTES_PER_CALL && !self.keys.is_empty())
        {
            self.close();
            self.slot = Some(slot);
        }
        self.bytes += bytes;
        self.keys.push(key);
        self.args.extend_from_slice(args);
    }

    /// Every call, with its slot, in the order gathered.
    pub fn finish(mut self) -> Vec<(u16, Cmd)> {
        self.close();
        self.done
    }

    fn close(&mut self) {
        let Some(slot) = self.slot else { return };
        if self.keys.is_empty() {
            return;
        }
        // Sized up front: no regrowth (and no copy) of a buffer this large per call; per
        // argument about 20 bytes more for the protocol's length prefixes.
        let args = 3 + self.keys.len() + self.head.len() + self.args.len();
        let head: usize = self.head.iter().map(Arg::len).sum();
        let mut cmd = Cmd::with_capacity(args, self.bytes + head + self.sha.len() + 20 * args);
        cmd.arg("EVALSHA").arg(self.sha).arg(self.keys.len());
        cmd.arg(&self.keys).arg(&self.head).arg(&self.args);
        self.done.push((slot, cmd));
        self.keys.clear();
        self.args.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(cmd: &Cmd) -> Vec<String> {
        cmd.args_iter()
            .map(|a| match a {
                redis::Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
                _ => String::new(),
            })
            .collect()
    }

    /// A call holds one slot's keys, in order, with the head first and each key's arguments
    /// after it; a new slot or a full call starts another.
    #[test]
    fn calls_are_cut_by_slot_and_size() {
        let mut calls = Calls::new("sha", vec![Arg::Num(60_000)]);
        calls.add(1, "a".into(), &[Arg::Bytes(b"x"), Arg::Num(7)]);
        calls.add(1, "b".into(), &[Arg::Bytes(b"y"), Arg::Num(8)]);
        calls.add(2, "c".into(), &[Arg::Bytes(b"z"), Arg::Num(9)]);
        for i in 0..KEYS_PER_CALL + 1 {
            calls.add(3, format!("k{i}"), &[Arg::Bytes(b""), Arg::Num(0)]);
        }
        let done = calls.finish();
        let slots: Vec<u16> = done.iter().map(|(s, _)| *s).collect();
        assert_eq!(slots, [1, 2, 3, 3]);
        assert_eq!(
            args(&done[0].1),
            ["EVALSHA", "sha", "2", "a", "b", "60000", "x", "7", "y", "8"]
        );
        assert_eq!(
            args(&done[1].1),
            ["EVALSHA", "sha", "1", "c", "60000", "z", "9"]
        );
        assert_eq!(args(&done[2].1)[2], KEYS_PER_CALL.to_string());
        assert_eq!(args(&done[3].1)[2..4], ["1", &format!("k{KEYS_PER_CALL}")]);
    }

    /// Past [`BYTES_PER_CALL`] a call is closed, but a single larger entry still gets a call.
    #[test]
    fn calls_stay_near_the_byte_cap() {
        let big = vec![b'x'; 40 * 1024];
        let mut calls = Calls::new("sha", Vec::new());
        calls.add(0, "a".into(), &[Arg::Bytes(&big)]);
        calls.add(0, "b".into(), &[Arg::Bytes(&big)]);
        let huge = vec![b'y'; 100 * 1024];
        calls.add(0, "c".into(), &[Arg::Bytes(&huge)]);
        let done = calls.finish();
        assert_eq!(done.len(), 3);
        for (_, cmd) in &done {
            assert_eq!(args(cmd)[2], "1");
        }
    }
}
