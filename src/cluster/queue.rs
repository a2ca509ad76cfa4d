//! The refresh queue on Redis Streams: `shards` stream keys per lane (`{<ns>:q:<i>}` and the
//! urgent lane `{<ns>:qu:<i>}`), spread over the masters by their slots, one consumer group
//! (`workers`). At-least-once: an entry stays pending until the worker that took it acks it;
//! a dead worker's entries are claimed by another (`claim_dead`, `XAUTOCLAIM`), and an entry
//! delivered `MAX_DELIVERIES` times parks its user (a new record unparks it). The per-user
//! pending marker is the truth, the stream only a notification (they live in different slots,
//! so they cannot be written atomically): `sweep` re-notifies users whose marker is old, and a
//! worker skips an entry whose user no longer has a marker. `trim` drops acknowledged entries
//! (`XTRIM MINID` below the oldest pending one).

use std::collections::HashMap;

use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::streams::{
    StreamAutoClaimReply, StreamPendingCountReply, StreamReadOptions, StreamReadReply,
};
use redis::{AsyncCommands, Value};

use super::{err, ClusterTier};
use crate::{Error, Result};

const GROUP: &str = "workers";
/// Deliveries after which an entry parks its user (as the local queue does).
pub(crate) const MAX_DELIVERIES: usize = 3;
/// A consumer idle this long with no entry is forgotten by `trim` (an hour: far longer than any
/// live worker's gap between reads).
const DEAD_CONSUMER_MS: i64 = 3_600_000;

/// One queue entry taken by a worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The user to refresh.
    pub user: String,
    /// The pending seq the entry notified.
    pub seq: u64,
    /// The stream key and entry id (for the ack).
    pub stream: String,
    /// Entry id.
    pub id: String,
}

impl ClusterTier {
    fn shard_key(&self, user: &str, urgent: bool) -> String {
        // FNV-1a: stable across processes and versions (the std hasher is neither).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in user.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        self.lane_key((h % self.config.shards as u64) as usize, urgent)
    }

    fn lane_key(&self, shard: usize, urgent: bool) -> String {
        let lane = if urgent { "qu" } else { "q" };
        format!("{{{}:{lane}:{shard}}}", self.config.namespace)
    }

    fn all_streams(&self) -> Vec<String> {
        (0..self.config.shards)
            .flat_map(|i| [self.lane_key(i, true), self.lane_key(i, false)])
            .collect()
    }

    pub(super) fn create_groups(&self) -> Result<()> {
        for key in self.all_streams() {
            let mut cmd = redis::cmd("XGROUP");
            cmd.arg("CREATE")
                .arg(&key)
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM");
            match self.run(cmd.query_async::<Value>(&mut self.conn())) {
                Ok(_) => {}
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(err("creating the queue's consumer group")(e)),
            }
        }
        Ok(())
    }

    /// Adds a notification for `user` (pending `seq`) to its shard of a lane.
    pub fn notify(&self, user: &str, seq: u64, urgent: bool) -> Result<()> {
        let key = self.shard_key(user, urgent);
        let _: String = self
            .run(self.conn().xadd(
                &key,
                "*",
                &[("u", user.to_string()), ("s", seq.to_string())],
            ))
            .map_err(err("notifying the refresh queue"))?;
        Ok(())
    }

    /// Takes up to `max` new entries for `consumer`: the urgent lane first, then the others,
    /// shard by shard starting at `start` (rotate it so workers spread over the shards).
    pub fn take(&self, consumer: &str, max: usize, start: usize) -> Result<Vec<Delivery>> {
        let mut out = Vec::new();
        let shards = self.config.shards;
        for urgent in [true, false] {
            for i in 0..shards {
                if out.len() >= max {
                    return Ok(out);
                }
                let key = self.lane_key((start + i) % shards, urgent);
                let opts = StreamReadOptions::default()
                    .group(GROUP, consumer)
                    .count(max - out.len());
                let reply: Option<StreamReadReply> = self
                    .run(self.conn().xread_options(&[&key], &[">"], &opts))
                    .map_err(err("reading the refresh queue"))?;
                for k in reply.map(|r| r.keys).unwrap_or_default() {
                    for id in k.ids {
                        out.push(delivery(&k.key, &id.id, &id.map)?);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Acknowledges taken entries (after their list was written, refused or skipped).
    pub fn ack(&self, done: &[Delivery]) -> Result<()> {
        let mut by_stream: HashMap<&str, Vec<&str>> = HashMap::new();
        for d in done {
            by_stream.entry(&d.stream).or_default().push(&d.id);
        }
        for (stream, ids) in by_stream {
            let _: u64 = self
                .run(self.conn().xack(stream, GROUP, &ids))
                .map_err(err("acknowledging queue entries"))?;
        }
        Ok(())
    }

    /// Takes over entries that another consumer took and has not acknowledged for
    /// `min_idle_ms` (a dead or stuck worker). Entries already delivered `MAX_DELIVERIES` times
    /// are acknowledged instead and their users parked. Returns the entries now owned by
    /// `consumer` and the number of users parked.
    pub fn claim_dead(
        &self,
        consumer: &str,
        min_idle_ms: u64,
        max: usize,
    ) -> Result<(Vec<Delivery>, usize)> {
        let mut out = Vec::new();
        let mut parked = 0;
        for key in self.all_streams() {
            let mut cmd = redis::cmd("XPENDING");
            cmd.arg(&key)
                .arg(GROUP)
                .arg("IDLE")
                .arg(min_idle_ms)
                .arg("-")
                .arg("+")
                .arg(max);
            let pending: StreamPendingCountReply = self
                .run(cmd.query_async(&mut self.conn()))
                .map_err(err("listing pending queue entries"))?;
            let worn: Vec<String> = pending
                .ids
                .iter()
                .filter(|p| p.times_delivered >= MAX_DELIVERIES)
                .map(|p| p.id.clone())
                .collect();
            for id in &worn {
                let entries: Vec<(String, HashMap<String, Value>)> = self
                    .run(self.conn().xrange(&key, id, id))
                    .map(|r: redis::streams::StreamRangeReply| {
                        r.ids.into_iter().map(|i| (i.id, i.map)).collect()
                    })
                    .map_err(err("reading a worn queue entry"))?;
                for (id, map) in entries {
                    let d = delivery(&key, &id, &map)?;
                    let m = self.user_key(&d.user, "m");
                    let n: u8 = self
                        .run(self.park.key(&m).arg(d.seq).invoke_async(&mut self.conn()))
                        .map_err(err("parking a user"))?;
                    parked += usize::from(n);
                }
                let _: u64 = self
                    .run(self.conn().xack(&key, GROUP, &[id]))
                    .map_err(err("acknowledging a worn entry"))?;
            }
            if pending.ids.len() == worn.len() {
                continue;
            }
            let mut cmd = redis::cmd("XAUTOCLAIM");
            cmd.arg(&key)
                .arg(GROUP)
                .arg(consumer)
                .arg(min_idle_ms)
                .arg("0-0")
                .arg("COUNT")
                .arg(max);
            let claimed: StreamAutoClaimReply = self
                .run(cmd.query_async(&mut self.conn()))
                .map_err(err("claiming a dead worker's entries"))?;
            for id in claimed.claimed {
                out.push(delivery(&key, &id.id, &id.map)?);
            }
        }
        Ok((out, parked))
    }

    /// Re-notifies every user whose pending marker is older than `older_than_ms` (and not
    /// parked): the stream entry may have been lost (a crash between the record and the
    /// notification, a failover, a trim). Scans every master. Returns the users re-notified.
    pub fn sweep(&self, older_than_ms: u64) -> Result<usize> {
        let now = crate::db::now_ms();
        let cutoff = now.saturating_sub(older_than_ms);
        let mut renotified = 0;
        self.for_each_user(|user, key| {
            let seq: String = self
                .run(
                    self.renotify
                        .key(key)
                        .arg(cutoff)
                        .arg(now)
                        .invoke_async(&mut self.conn()),
                )
                .map_err(err("checking a pending marker"))?;
            if let Ok(seq) = seq.parse::<u64>() {
                self.notify(user, seq, false)?;
                renotified += 1;
            }
            Ok(())
        })?;
        Ok(renotified)
    }

    /// Asks for a refresh of every user without a pending marker whose cached list is missing
    /// or not `current` (given the list's bytes): after a model or tokenization change, as the
    /// local backend's sweep does. Scans every master. Returns the users queued.
    pub fn requeue_outdated(&self, current: impl Fn(&str, &[u8]) -> bool) -> Result<usize> {
        let mut queued = 0;
        self.for_each_user(|user, key| {
            let mut cmd = redis::cmd("HMGET");
            cmd.arg(key).arg("p").arg("l");
            let (pending, list): (Option<Vec<u8>>, Option<Vec<u8>>) = self
                .run(cmd.query_async(&mut self.conn()))
                .map_err(err("reading a user's list"))?;
            if pending.is_none()
                && !list.as_deref().is_some_and(|l| current(user, l))
                && self.request_refresh(user, false)?
            {
                queued += 1;
            }
            Ok(())
        })?;
        Ok(queued)
    }

    /// Calls `f(user, meta key)` for every user of this namespace, master by master (`SCAN`;
    /// a user written during the scan may be seen or not).
    pub(crate) fn for_each_user(&self, mut f: impl FnMut(&str, &str) -> Result<()>) -> Result<()> {
        let pattern = format!("{{{}:u:*}}:m", self.config.namespace);
        let prefix = format!("{{{}:u:", self.config.namespace);
        for (host, port) in self.masters()? {
            let mut cursor = 0u64;
            loop {
                let mut cmd = redis::cmd("SCAN");
                cmd.arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000);
                let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port,
                });
                let reply = self
                    .run(self.conn().route_command(cmd, route))
                    .map_err(err("scanning the users"))?;
                let (next, keys): (u64, Vec<String>) =
                    redis::from_redis_value(reply).map_err(err("SCAN reply"))?;
                for key in keys {
                    if let Some(user) = key
                        .strip_prefix(&prefix)
                        .and_then(|k| k.strip_suffix("}:m"))
                    {
                        f(user, &key)?;
                    }
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(())
    }

    /// Drops acknowledged entries: each stream is trimmed below its oldest pending entry (or
    /// below the group's last delivered id when nothing is pending). Returns entries removed.
    pub fn trim(&self) -> Result<u64> {
        let mut removed = 0;
        for key in self.all_streams() {
            let mut cmd = redis::cmd("XPENDING");
            cmd.arg(&key).arg(GROUP);
            let summary: Value = self
                .run(cmd.query_async(&mut self.conn()))
                .map_err(err("reading the queue's pending summary"))?;
            let (count, smallest): (u64, Option<String>) = match summary {
                Value::Array(v) if v.len() >= 2 => (
                    redis::from_redis_value(v[0].clone()).unwrap_or(0),
                    redis::from_redis_value(v[1].clone()).ok(),
                ),
                other => return Err(Error::Cluster(format!("XPENDING replied {other:?}"))),
            };
            let min = if count > 0 {
                smallest
            } else {
                self.last_delivered(&key)?.map(|id| next_id(&id))
            };
            if let Some(min) = min {
                let mut cmd = redis::cmd("XTRIM");
                cmd.arg(&key).arg("MINID").arg(min);
                let n: u64 = self
                    .run(cmd.query_async(&mut self.conn()))
                    .map_err(err("trimming the queue"))?;
                removed += n;
            }
        }
        self.forget_dead_consumers(DEAD_CONSUMER_MS)?;
        Ok(removed)
    }

    /// Whether every queue entry was delivered and acknowledged (nothing for a worker to do,
    /// nothing in flight). A marker whose notification was lost is not seen here (the sweep
    /// finds it).
    pub fn queue_idle(&self) -> Result<bool> {
        for key in self.all_streams() {
            let mut cmd = redis::cmd("XINFO");
            cmd.arg("STREAM").arg(&key);
            let info: HashMap<String, Value> = self
                .run(cmd.query_async(&mut self.conn()))
                .map_err(err("reading the queue's stream"))?;
            let last: Option<String> = info
                .get("last-generated-id")
                .and_then(|v| redis::from_redis_value(v.clone()).ok());
            let mut cmd = redis::cmd("XPENDING");
            cmd.arg(&key).arg(GROUP);
            let summary: Value = self
                .run(cmd.query_async(&mut self.conn()))
                .map_err(err("reading the queue's pending summary"))?;
            let pending: u64 = match summary {
                Value::Array(v) if !v.is_empty() => {
                    redis::from_redis_value(v[0].clone()).unwrap_or(0)
                }
                other => return Err(Error::Cluster(format!("XPENDING replied {other:?}"))),
            };
            let delivered = self.last_delivered(&key)?;
            let undelivered = match last.as_deref() {
                None | Some("0-0") => false,
                Some(last) => delivered.as_deref() != Some(last),
            };
            if pending > 0 || undelivered {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Removes from the consumer group the consumers that hold no entry and have been idle for
    /// `idle_ms` (`trim` uses an hour: every worker process start adds a name, and a dead
    /// one's entries are claimed by others, so only its name is left). Returns the removals
    /// (a consumer counts once per stream it read).
    pub fn forget_dead_consumers(&self, idle_ms: i64) -> Result<u64> {
        let mut removed = 0;
        for key in self.all_streams() {
            let mut cmd = redis::cmd("XINFO");
            cmd.arg("CONSUMERS").arg(&key).arg(GROUP);
            let consumers: Vec<HashMap<String, Value>> = self
                .run(cmd.query_async(&mut self.conn()))
                .map_err(err("listing the queue's consumers"))?;
            for c in consumers {
                let get = |f: &str| {
                    c.get(f)
                        .and_then(|v| redis::from_redis_value::<i64>(v.clone()).ok())
                };
                let name = c
                    .get("name")
                    .and_then(|v| redis::from_redis_value::<String>(v.clone()).ok());
                let (Some(name), Some(0), Some(idle)) = (name, get("pending"), get("idle")) else {
                    continue;
                };
                if idle >= idle_ms {
                    let mut cmd = redis::cmd("XGROUP");
                    cmd.arg("DELCONSUMER").arg(&key).arg(GROUP).arg(&name);
                    let _: i64 = self
                        .run(cmd.query_async(&mut self.conn()))
                        .map_err(err("removing a dead consumer"))?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    fn last_delivered(&self, key: &str) -> Result<Option<String>> {
        let mut cmd = redis::cmd("XINFO");
        cmd.arg("GROUPS").arg(key);
        let groups: Vec<HashMap<String, Value>> = self
            .run(cmd.query_async(&mut self.conn()))
            .map_err(err("reading the queue's group"))?;
        Ok(groups
            .into_iter()
            .find(|g| matches!(g.get("name"), Some(v) if redis::from_redis_value::<String>(v.clone()).ok().as_deref() == Some(GROUP)))
            .and_then(|g| g.get("last-delivered-id").cloned())
            .and_then(|v| redis::from_redis_value::<String>(v).ok())
            .filter(|id| id != "0-0"))
    }

    /// Entries in the queue (every stream, pending or not; before `trim` this includes
    /// acknowledged ones).
    pub fn queue_len(&self) -> Result<u64> {
        let mut n = 0;
        for key in self.all_streams() {
            let len: u64 = self
                .run(self.conn().xlen(&key))
                .map_err(err("reading the queue's length"))?;
            n += len;
        }
        Ok(n)
    }

    /// The masters' addresses, from `CLUSTER NODES` (failed nodes left out).
    fn masters(&self) -> Result<Vec<(String, u16)>> {
        let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary);
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("NODES");
        let text: String = self
            .run(self.conn().route_command(cmd, route))
            .map_err(err("listing the cluster's nodes"))
            .and_then(|v| redis::from_redis_value(v).map_err(err("CLUSTER NODES reply")))?;
        let mut out = Vec::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 3 || !f[2].contains("master") || f[2].contains("fail") {
                continue;
            }
            let addr = f[1].split('@').next().unwrap_or("");
            if let Some((host, port)) = addr.rsplit_once(':') {
                if let Ok(port) = port.parse() {
                    out.push((host.to_string(), port));
                }
            }
        }
        if out.is_empty() {
            return Err(Error::Cluster(format!(
                "CLUSTER NODES lists no live master: {text:?}"
            )));
        }
        Ok(out)
    }
}

/// The smallest id greater than `id` (`ms-seq` + 1).
fn next_id(id: &str) -> String {
    match id
        .split_once('-')
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
    {
        Some((ms, seq)) => format!("{ms}-{}", seq + 1),
        None => id.to_string(),
    }
}

fn delivery(stream: &str, id: &str, map: &HashMap<String, Value>) -> Result<Delivery> {
    let field = |name: &str| -> Result<String> {
        map.get(name)
            .cloned()
            .and_then(|v| redis::from_redis_value::<String>(v).ok())
            .ok_or_else(|| {
                Error::Cluster(format!(
                    "queue entry {id} in {stream} has no field {name:?}"
                ))
            })
    };
    let seq = field("s")?;
    Ok(Delivery {
        user: field("u")?,
        seq: seq
            .parse()
            .map_err(|_| Error::Cluster(format!("queue entry {id} in {stream}: seq {seq:?}")))?,
        stream: stream.to_string(),
        id: id.to_string(),
    })
}
