//! Fenced writes of a vehicle's hash (docs/redis.md#leases): with `--cluster`, a node writes
//! `state` and `tracker` of `fleetmq:vehicle:{id}` only while the hash's lease fields name it
//! and the epoch it acquired the lease with. A node that paused (GC, swap, a stopped VM) past its
//! lease, while another node acquired the vehicle with a newer epoch, is refused by Redis itself:
//! the check and the write are one Lua script on one key, so it also holds on Redis Cluster.
//!
//! [`Fence`] is how the writer learns the epoch under which a vehicle is held (the cluster's
//! lease table implements it); [`Lua`] runs a script by its SHA1 and loads it when Redis does
//! not know it (first use, or after a Redis restart).

use std::sync::Mutex;
use std::time::Instant;

use crate::persist::Conn;
use crate::persist::conn::query_each;
use redis::{Cmd, ErrorKind, FromRedisValue, RedisError, RedisResult, ServerErrorKind};

/// What a fenced script returns when the lease is not (any more) the caller's.
pub const FENCED_OUT: i64 = -1;

/// The writer's view of the cluster's leases.
pub trait Fence: Send + Sync {
    /// This node's id, as stored in the lease's `lease_owner` field.
    fn node(&self) -> &str;
    /// The epoch this node holds `vehicle` under, `None` when it does not hold it.
    fn epoch(&self, vehicle: &str) -> Option<u64>;
    /// How long a lease lasts from its last extension, ms (a passing fenced write extends it).
    fn lease_ms(&self) -> u64;
    /// The fenced writes of `vehicles`, sent at `sent`, all passed: each one's lease now runs
    /// until at least `sent` + [`Fence::lease_ms`].
    fn renewed_by_write(&self, vehicles: &mut dyn Iterator<Item = &str>, sent: Instant);
    /// A fenced write was refused or failed: some lease may be lost, so the next renewal
    /// round goes over every lease (it is where a loss is found and handled).
    fn write_refused(&self);
}

/// `KEYS[1]` = `fleetmq:vehicle:{id}`; `ARGV` = node, epoch, state TTL ms, state JSON or "",
/// tracker snapshot or "", "release" to also give the lease up. Writes the non-empty fields and the
/// TTL when `lease_owner`/`lease_epoch` are the caller's; returns 1, else [`FENCED_OUT`]. A
/// release keeps `lease_epoch`, so the next owner's epoch is larger.
pub static FENCED_WRITE: Lua = Lua::new(
    r"
local f = redis.call('HMGET', KEYS[1], 'lease_owner', 'lease_epoch')
if f[1] ~= ARGV[1] or f[2] ~= ARGV[2] then return -1 end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'state', ARGV[4]) end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'tracker', ARGV[5]) end
if ARGV[6] == 'release' then redis.call('HDEL', KEYS[1], 'lease_owner', 'lease_until') end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
",
);

/// The writer's [`FENCED_WRITE`] for many vehicles in one call: `KEYS` = their
/// `fleetmq:vehicle:{id}` keys (one hash slot on a Redis Cluster); `ARGV` = node, state TTL ms,
/// lease ms, then per key its epoch, state JSON or "", tracker snapshot or "". Replies per key 1,
/// or [`FENCED_OUT`]. A script call per vehicle per write cost Redis more than the writes in it.
///
/// A write that passes also extends the lease to Redis's time + lease ms: it has just checked
/// what a renewal checks (owner and epoch), so the renewal of a vehicle written in the last
/// moment is skipped ([`Fence::renewed_by_write`]) and Redis passes over a moving vehicle's
/// hash once a second instead of twice.
pub static FENCED_WRITE_MANY: Lua = Lua::new(
    r"
local t = redis.call('TIME')
local till = string.format('%.0f', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[3]))
local out = {}
for i, key in ipairs(KEYS) do
  local a = 3 * i + 1
  local f = redis.call('HMGET', key, 'lease_owner', 'lease_epoch')
  if f[1] ~= ARGV[1] or f[2] ~= ARGV[a] then
    out[i] = -1
  else
    if ARGV[a + 1] ~= '' and ARGV[a + 2] ~= '' then
      redis.call('HSET', key, 'state', ARGV[a + 1], 'tracker', ARGV[a + 2], 'lease_until', till)
    elseif ARGV[a + 1] ~= '' then
      redis.call('HSET', key, 'state', ARGV[a + 1], 'lease_until', till)
    elseif ARGV[a + 2] ~= '' then
      redis.call('HSET', key, 'tracker', ARGV[a + 2], 'lease_until', till)
    else
      redis.call('HSET', key, 'lease_until', till)
    end
    redis.call('PEXPIRE', key, ARGV[2])
    out[i] = 1
  end
end
return out
",
);

/// A Lua script called by SHA1 (`EVALSHA`), loaded with `SCRIPT LOAD` on first use and again
/// when Redis answers `NOSCRIPT`.
pub struct Lua {
    code: &'static str,
    /// The SHA1 Redis gave for `code`; `None` until loaded.
    sha: Mutex<Option<String>>,
}

impl Lua {
    pub const fn new(code: &'static str) -> Lua {
        Lua {
            code,
            sha: Mutex::new(None),
        }
    }

    /// The script's SHA1, loading it into Redis when not known yet.
    ///
    /// # Errors
    /// The `SCRIPT LOAD` round trip failed.
    pub async fn sha(&self, conn: &mut Conn) -> RedisResult<String> {
        if let Some(sha) = self.sha.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(sha);
        }
        let sha: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(self.code)
            .query_async(conn)
            .await?;
        *self.sha.lock().unwrap_or_else(|e| e.into_inner()) = Some(sha.clone());
        Ok(sha)
    }

    /// Forgets the SHA1 (Redis said `NOSCRIPT`): the next [`Lua::sha`] loads the script again.
    pub fn forget(&self) {
        *self.sha.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// `EVALSHA` of this script on one key: `args` fills the command after `1 key`.
    ///
    /// # Errors
    /// A failed round trip, or the script's own error.
    pub async fn call<T: FromRedisValue>(
        &self,
        conn: &mut Conn,
        key: &str,
        args: impl Fn(&mut Cmd),
    ) -> RedisResult<T> {
        for _ in 0..2 {
            let sha = self.sha(conn).await?;
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(sha).arg(1).arg(key);
            args(&mut cmd);
            match cmd.query_async(conn).await {
                Err(e) if is_no_script(&e) => self.forget(),
                other => return other,
            }
        }
        Err((ErrorKind::Client, "script not loaded after two tries").into())
    }

    /// The `EVALSHA` commands `cmds` makes from this script's SHA1, pipelined per hash slot
    /// ([`query_each`]); loaded again and sent once more when Redis answers `NOSCRIPT`.
    ///
    /// # Errors
    /// A failed round trip, or `NOSCRIPT` twice.
    pub async fn query_each(
        &self,
        conn: &Conn,
        per_pipeline: usize,
        cmds: impl Fn(&str) -> Vec<(String, Cmd)>,
    ) -> RedisResult<Vec<RedisResult<redis::Value>>> {
        let mut loader = conn.clone();
        for _ in 0..2 {
            let sha = self.sha(&mut loader).await?;
            let results = query_each(conn, cmds(&sha), per_pipeline).await?;
            if !no_script(&results) {
                return Ok(results);
            }
            self.forget();
        }
        Err((ErrorKind::Client, "script not loaded after two tries").into())
    }
}

/// Whether any result of a pipeline was `NOSCRIPT`.
pub fn no_script(results: &[RedisResult<redis::Value>]) -> bool {
    results
        .iter()
        .any(|r| matches!(r, Err(e) if is_no_script(e)))
}

fn is_no_script(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}
