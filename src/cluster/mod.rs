//! The per-user tier on Redis Cluster: histories, cached lists and the refresh queue, for
//! serving processes and refresh workers on any number of hosts (issue 16, first slice).
//!
//! Every user's keys share one hash tag, `{<ns>:u:<user>}`, so they live in one slot: the
//! history (`…:h`, a string of 24-byte entries, `entry.rs`) and a metadata hash (`…:m`:
//! version `v`, recorded count `r`, stamp nonce `n`, pending refresh seq `p` and its time `pt`,
//! parked seq `park`, the cached list `l` and the nonce it was computed under `ln`). Recording
//! is one Lua script (append + new version and nonce + pending marker, atomic in the slot); the
//! list write is a Lua compare-and-swap on (version, nonce). The nonce matters: asynchronous
//! replication can roll a version back in a failover, and a counter alone would accept a list
//! computed from a history that no longer exists. The queue is `queue.rs`.
//!
//! What this slice does not do yet: the `Db` facade does not route through it (it is a
//! library-level tier, tested on a real cluster in `tests/cluster.rs`); see docs/cluster.md.

mod catalog_log;
mod entry;
mod kinds;
mod lua;
mod queue;

pub use catalog_log::LogEntry;
pub use entry::ClusterEntry;
pub use queue::Delivery;

use std::future::Future;

use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
use redis::Script;

use crate::{Error, Result};

/// When a record is acknowledged on the cluster tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterDurability {
    /// After `WAIT 1` saw the write on a replica: a failover of the user's master keeps it.
    Sync,
    /// After the master applied it: a failover before replication can lose it (the list and
    /// queue entry are derived and heal; the interactions are gone).
    Buffered,
}

/// How to reach the cluster and lay out this database's keys.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// `redis://host:port` of one or more nodes (the client discovers the rest).
    pub urls: Vec<String>,
    /// Key namespace: every key starts with `{<namespace>:`. Letters, digits, `_`, `-`, `.`;
    /// databases (and tests) with different namespaces share one cluster safely.
    pub namespace: String,
    /// Entries a history keeps (the most recent by timestamp).
    pub history_limit: usize,
    /// Queue shards per lane (streams spread over the masters).
    pub shards: usize,
    /// `Sync`: a record returns after `WAIT 1` saw it on a replica; `Buffered`: after the
    /// master applied it (a failover before replication can lose it).
    pub durability: ClusterDurability,
    /// How long a Sync record waits for a replica's acknowledgement.
    pub wait_timeout_ms: u64,
}

impl ClusterConfig {
    /// Defaults for `urls`: namespace `convergedb`, history 10,000, 8 shards, Sync, 1 s wait.
    pub fn new(urls: impl IntoIterator<Item = impl Into<String>>) -> Self {
        ClusterConfig {
            urls: urls.into_iter().map(Into::into).collect(),
            namespace: "convergedb".into(),
            history_limit: 10_000,
            shards: 8,
            durability: ClusterDurability::Sync,
            wait_timeout_ms: 1000,
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(m));
        if self.urls.is_empty() {
            return bad("the cluster configuration names no node URL".into());
        }
        let ns = &self.namespace;
        if ns.is_empty()
            || ns.len() > 64
            || !ns
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        {
            return bad(format!(
                "cluster namespace {ns:?} must be 1 to 64 letters, digits, '_', '-' or '.'"
            ));
        }
        if self.history_limit == 0 || self.history_limit > 1_000_000 {
            return bad(format!(
                "history_limit {} must be in 1..=1000000",
                self.history_limit
            ));
        }
        if self.shards == 0 || self.shards > 1024 {
            return bad(format!("shards {} must be in 1..=1024", self.shards));
        }
        Ok(())
    }
}

/// A user's state as a serving read sees it (one round trip).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UserRead {
    /// History version (0: no history).
    pub version: u64,
    /// The history's stamp nonce (0: no history).
    pub nonce: u64,
    /// The pending refresh seq, if a refresh is owed.
    pub pending: Option<u64>,
    /// Whether the refresh failed on every delivery and waits for the next record.
    pub parked: bool,
    /// The cached list's bytes and whether it was computed from this exact history (same
    /// version and nonce).
    pub list: Option<(Vec<u8>, bool)>,
    /// The newest history entries (at most the `tail` asked for), oldest first.
    pub tail: Vec<ClusterEntry>,
}

/// A user's whole history with its stamps (what a refresh worker computes from).
#[derive(Clone, Debug, PartialEq)]
pub struct UserHistory {
    /// History version.
    pub version: u64,
    /// Stamp nonce.
    pub nonce: u64,
    /// The pending refresh seq, if any.
    pub pending: Option<u64>,
    /// Interactions ever recorded (including those the history limit dropped).
    pub recorded: u64,
    /// Entries, oldest first, at most `history_limit`.
    pub entries: Vec<ClusterEntry>,
}

/// The tier's handle: `Send + Sync`, one multiplexed connection per node shared by all threads.
pub struct ClusterTier {
    rt: tokio::runtime::Runtime,
    conn: ClusterConnection,
    /// Blocking connections for the serving read (one per concurrent reader, reused): a
    /// read through the async connection paid the runtime's wake-ups on top of the round trip.
    client: ClusterClient,
    readers: parking_lot::Mutex<Vec<redis::cluster::ClusterConnection>>,
    config: ClusterConfig,
    record: Script,
    read: Script,
    write_list: Script,
    park: Script,
    renotify: Script,
    request: Script,
    kind: Script,
    kinds: parking_lot::RwLock<kinds::KindCache>,
}

impl std::fmt::Debug for ClusterTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTier")
            .field("urls", &self.config.urls)
            .field("namespace", &self.config.namespace)
            .finish_non_exhaustive()
    }
}

/// Maps a client error to ours, with what was being done.
fn err<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> Error + '_ {
    move |e| Error::Cluster(format!("{what}: {e}"))
}

/// Extra history entries stored before a trim, so a history at the cap trims once per `SLACK`
/// appends (O(1) amortized) rather than on every one; readers see the newest `history_limit`.
const SLACK: usize = 64;

impl ClusterTier {
    /// Connects, checks the cluster answers, and creates the queue's consumer groups.
    pub fn connect(config: ClusterConfig) -> Result<ClusterTier> {
        config.validate()?;
        // A current-thread runtime: the caller's thread drives the connection while it waits
        // (no hand-off to a runtime thread and back: that cost ~95 us a read on 2 cores).
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| Error::Cluster(format!("starting the client runtime: {e}")))?;
        let client = ClusterClient::builder(config.urls.clone())
            .connection_timeout(std::time::Duration::from_secs(2))
            .response_timeout(std::time::Duration::from_secs(5))
            .build()
            .map_err(err("cluster URLs"))?;
        let conn = rt
            .block_on(client.get_async_connection())
            .map_err(err("connecting"))?;
        let tier = ClusterTier {
            rt,
            conn,
            client,
            readers: parking_lot::Mutex::new(Vec::new()),
            config,
            record: Script::new(lua::RECORD),
            read: Script::new(lua::READ),
            write_list: Script::new(lua::WRITE_LIST),
            park: Script::new(lua::PARK),
            renotify: Script::new(lua::RENOTIFY),
            request: Script::new(lua::REQUEST),
            kind: Script::new(lua::KIND),
            kinds: Default::default(),
        };
        tier.create_groups()?;
        Ok(tier)
    }

    /// The configuration this tier runs with.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    fn run<T>(&self, f: impl Future<Output = T>) -> T {
        self.rt.block_on(f)
    }

    fn conn(&self) -> ClusterConnection {
        self.conn.clone()
    }

    fn user_key(&self, user: &str, part: &str) -> String {
        format!("{{{}:u:{user}}}:{part}", self.config.namespace)
    }

    /// Appends `entries` to `user`'s history atomically (one script in the user's slot), with a
    /// new version, a new stamp nonce and the pending marker `seq`, then notifies the queue.
    /// Under Sync, returns only once a replica has the write. Returns the new version.
    pub fn record(&self, user: &str, entries: &[ClusterEntry], seq: u64) -> Result<u64> {
        if entries.is_empty() {
            return Err(Error::InvalidArgument(
                "a record needs at least one entry".into(),
            ));
        }
        let (h, m) = (self.user_key(user, "h"), self.user_key(user, "m"));
        let nonce = rand::random::<u64>().max(1);
        let blob = entry::encode_sorted(entries);
        let version: u64 = self
            .run(
                self.record
                    .key(&h)
                    .key(&m)
                    .arg(self.config.history_limit)
                    .arg(SLACK)
                    .arg(nonce)
                    .arg(seq)
                    .arg(blob)
                    .arg(crate::db::now_ms())
                    .invoke_async(&mut self.conn()),
            )
            .map_err(err("recording interactions"))?;
        // The marker is the truth; the stream entry only a notification (another slot): if it
        // is lost, the sweep re-notifies. Sent before waiting for the replica: a record whose
        // wait fails is not acknowledged but may be applied, and its list is then refreshed.
        self.notify(user, seq, false)?;
        self.make_durable(&m)?;
        Ok(version)
    }

    /// `WAIT 1` on the master that owns `key`, under Sync: the commands this client sent it so
    /// far (the write included) are on a replica, or the call fails.
    fn make_durable(&self, key: &str) -> Result<()> {
        if self.config.durability != ClusterDurability::Sync {
            return Ok(());
        }
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(1).arg(self.config.wait_timeout_ms);
        let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::with_slot(
            Slot::for_key(key),
            SlotAddr::Master,
        )));
        let acked = self
            .run(self.conn().route_command(cmd, route))
            .map_err(err("waiting for a replica"))?;
        match redis::from_redis_value::<u64>(acked) {
            Ok(n) if n >= 1 => Ok(()),
            Ok(_) => Err(Error::Cluster(format!(
                "no replica acknowledged the write of {key} within {} ms (Sync needs a replica \
                 per master; use Buffered on a cluster without replicas)",
                self.config.wait_timeout_ms
            ))),
            Err(e) => Err(Error::Cluster(format!("WAIT replied {e}"))),
        }
    }

    /// One round trip: stamps, pending marker, cached list and the newest `tail` entries
    /// (`tail` 0: one `HMGET` of the metadata hash, the cheapest read; else one script).
    pub fn read(&self, user: &str, tail: usize) -> Result<UserRead> {
        let (h, m) = (self.user_key(user, "h"), self.user_key(user, "m"));
        let pooled = self.readers.lock().pop();
        let mut reader = match pooled {
            Some(c) => c,
            None => self
                .client
                .get_connection()
                .map_err(err("connecting a reader"))?,
        };
        let reply: Vec<Vec<u8>> = if tail == 0 {
            let fields: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
                .arg(&m)
                .arg(&["v", "n", "p", "l", "ln", "park"])
                .query(&mut reader)
                .map_err(err("reading a user"))?;
            let mut out: Vec<Vec<u8>> = fields.into_iter().map(Option::unwrap_or_default).collect();
            out.extend([Vec::new(), Vec::new()]); // no tail, no recorded count
            out
        } else {
            self.read
                .key(&h)
                .key(&m)
                // Only visible entries: the stored history may hold up to SLACK more.
                .arg(tail.min(self.config.history_limit))
                .invoke(&mut reader)
                .map_err(err("reading a user"))?
        };
        // Only a connection whose call succeeded goes back (a failed one may be mid-reply).
        self.readers.lock().push(reader);
        let [v, n, p, l, ln, park, t, _]: [Vec<u8>; 8] =
            reply.try_into().map_err(|r: Vec<_>| {
                Error::Cluster(format!("read replied {} fields, not 8", r.len()))
            })?;
        let version = num(user, "v", &v)?.unwrap_or(0);
        let nonce = num(user, "n", &n)?.unwrap_or(0);
        let list_nonce = num(user, "ln", &ln)?;
        let list = (!l.is_empty()).then(|| {
            let current = list_nonce == Some(nonce) && nonce != 0;
            (l, current)
        });
        Ok(UserRead {
            version,
            nonce,
            pending: num(user, "p", &p)?,
            parked: !park.is_empty(),
            list,
            tail: entry::decode_all(user, &t)?,
        })
    }

    /// The whole visible history with its stamps, or `None` for a user never recorded.
    pub fn history(&self, user: &str) -> Result<Option<UserHistory>> {
        let cap = self.config.history_limit;
        let (h, m) = (self.user_key(user, "h"), self.user_key(user, "m"));
        let reply: Vec<Vec<u8>> = self
            .run(
                self.read
                    .key(&h)
                    .key(&m)
                    .arg(cap)
                    .invoke_async(&mut self.conn()),
            )
            .map_err(err("reading a history"))?;
        if reply.len() != 8 {
            return Err(Error::Cluster(format!(
                "read replied {} fields, not 8",
                reply.len()
            )));
        }
        let Some(version) = num(user, "v", &reply[0])? else {
            return Ok(None);
        };
        Ok(Some(UserHistory {
            version,
            nonce: num(user, "n", &reply[1])?.unwrap_or(0),
            pending: num(user, "p", &reply[2])?,
            recorded: num(user, "r", &reply[7])?.unwrap_or(0),
            entries: entry::decode_all(user, &reply[6])?,
        }))
    }

    /// The compare-and-swap list write: stores `list` only if `user`'s history still has
    /// `version` and `nonce`; clears the pending marker if it is still `seq`. Returns whether
    /// the list was written.
    pub fn write_list(
        &self,
        user: &str,
        version: u64,
        nonce: u64,
        seq: u64,
        list: &[u8],
    ) -> Result<bool> {
        let m = self.user_key(user, "m");
        let out: u8 = self
            .run(
                self.write_list
                    .key(&m)
                    .arg(version)
                    .arg(nonce)
                    .arg(list)
                    .arg(seq)
                    .invoke_async(&mut self.conn()),
            )
            .map_err(err("writing a list"))?;
        Ok(out > 0)
    }

    /// Asks for a refresh of `user` (urgent: read first by the workers): sets the pending
    /// marker unless one is set and notifies the queue. Returns false for a user without a
    /// history (nothing to refresh).
    pub fn request_refresh(&self, user: &str, urgent: bool) -> Result<bool> {
        let m = self.user_key(user, "m");
        let seq: String = self
            .run(
                self.request
                    .key(&m)
                    .arg(rand::random::<u64>().max(1))
                    .arg(crate::db::now_ms())
                    .invoke_async(&mut self.conn()),
            )
            .map_err(err("requesting a refresh"))?;
        if seq.is_empty() {
            return Ok(false);
        }
        let seq = num(user, "p", seq.as_bytes())?.unwrap_or(0);
        self.notify(user, seq, urgent)?;
        Ok(true)
    }

    /// Deletes every key of `user` (tests and tools; not atomic with concurrent writers).
    pub fn forget_user(&self, user: &str) -> Result<()> {
        let keys = [self.user_key(user, "h"), self.user_key(user, "m")];
        let mut cmd = redis::cmd("DEL");
        cmd.arg(&keys[..]);
        let _: i64 = self
            .run(cmd.query_async(&mut self.conn()))
            .map_err(err("deleting a user"))?;
        Ok(())
    }
}

/// Parses a decimal field; empty is absent, anything else not a number is corruption.
fn num(user: &str, field: &str, b: &[u8]) -> Result<Option<u64>> {
    if b.is_empty() {
        return Ok(None);
    }
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            Error::corruption(
                "cluster meta",
                user.as_bytes(),
                format!(
                    "field {field:?} is {:?}, not a number",
                    String::from_utf8_lossy(b)
                ),
            )
        })
}
