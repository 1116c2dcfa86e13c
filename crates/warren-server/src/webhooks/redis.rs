//! Webhooks in a cluster: removal markers and endpoint queues in Redis.
//!
//! Each endpoint's queue is a Redis stream (`<prefix>:wh:<app>:<n>:<url hash>`, the same on
//! every node with the same configuration) read through one consumer group by every node.
//! A node reads new entries and, four times per `cluster.node_timeout_ms`, claims
//! (XAUTOCLAIM) entries another consumer has left idle longer than that; while it works on a
//! batch (its retries included) it claims the batch again every third of that, so a live
//! node's batch is never taken over and a dead node's is, by whichever node reads next. An
//! entry is acknowledged and deleted once delivered or given up on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fred::clients::Client;
use fred::interfaces::ClientLike;
use fred::types::config::ReconnectPolicy;
use fred::types::scripts::Script;
use fred::types::Value;
use futures_util::future::join_all;
use tokio::sync::{mpsc, Notify};

use super::queue::{take_shared, waiting, Pending, Queue};
use super::removal::{Markers, Op};
use crate::config::RedisTarget;

/// Every Redis command's time limit.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// An idle endpoint looks for entries other nodes left this often.
const POLL: Duration = Duration::from_millis(250);
/// Events written to a stream in one round trip at most.
const WRITE_BATCH: usize = 512;
const GROUP: &str = "senders";
/// A node looks for entries left idle this many times per `min_idle`: a dead node's batch
/// waits at most a quarter more than the idle time before another node takes it.
const CLAIMS_PER_IDLE: u32 = 4;

/// KEYS stream: its length (entries not yet delivered or given up on, cluster-wide).
const LENGTH: &str = "return redis.call('XLEN', KEYS[1])";

/// KEYS stream; ARGV max length, then (event id, event JSON) pairs.
const PUSH: &str = r"
for i = 2, #ARGV, 2 do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'id', ARGV[i], 'e', ARGV[i + 1])
end
return 0";

/// KEYS stream; ARGV group, consumer, count, min idle ms, claim (1 or 0) -> flat {entry, id,
/// json, ...}: with claim, entries idle that long first (a dead consumer's), then new ones.
const TAKE: &str = r"
local s, g, c, n = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
if redis.call('EXISTS', s) == 0 then return {} end
redis.pcall('XGROUP', 'CREATE', s, g, '0')
local out = {}
local function add(entries)
  for _, e in ipairs(entries) do
    if e and e[2] then
      local f, id, ev = e[2], nil, nil
      for i = 1, #f, 2 do
        if f[i] == 'id' then id = f[i + 1] elseif f[i] == 'e' then ev = f[i + 1] end
      end
      if id and ev then
        table.insert(out, e[1]); table.insert(out, id); table.insert(out, ev)
      else
        redis.call('XACK', s, g, e[1]); redis.call('XDEL', s, e[1])
      end
    end
  end
end
if ARGV[5] == '1' then add(redis.call('XAUTOCLAIM', s, g, c, ARGV[4], '0-0', 'COUNT', n)[2]) end
local room = n - #out / 3
if room > 0 then
  local r = redis.call('XREADGROUP', 'GROUP', g, c, 'COUNT', room, 'STREAMS', s, '>')
  if r and r[1] then add(r[1][2]) end
end
return out";

/// KEYS stream; ARGV group, consumer, entries...: this consumer still works on them.
const KEEP: &str = r"
return #redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(ARGV, 3))";

/// KEYS stream; ARGV group, entries...: finished with them.
const DONE: &str = r"
redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 2))
return redis.call('XDEL', KEYS[1], unpack(ARGV, 2))";

/// Connects a client of its own (on the runtime this runs on).
pub(crate) async fn connect(target: &RedisTarget) -> anyhow::Result<Client> {
    let mut builder = fred::types::Builder::from_config(target.client_config().clone());
    builder
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 1000, 2))
        .with_performance_config(|p| p.default_command_timeout = COMMAND_TIMEOUT)
        .with_connection_config(|c| {
            c.connection_timeout = COMMAND_TIMEOUT;
            c.internal_command_timeout = COMMAND_TIMEOUT;
            c.max_command_attempts = 1;
        });
    let client = builder.build()?;
    tokio::time::timeout(COMMAND_TIMEOUT * 3, client.init())
        .await
        .map_err(|_| anyhow::anyhow!("cannot reach Redis at {target} for webhooks: timed out"))??;
    Ok(client)
}

/// A marker's value: `<token>:<reported at, Unix µs>` (exact in Lua's doubles).
/// KEYS one marker per operation (repeats allowed); ARGV the marks' TTL in ms, then per
/// operation its kind and argument: `m` and the value (mark), `c` and the return's time
/// (remove the marker of a removal reported no later), `o` and a token (remove the marker
/// only if it holds this token). Returns 1 or 0 per operation: marked, or whether it removed.
const RUN: &str = r"
local out = {}
for i = 1, #KEYS do
  local k, kind, arg = KEYS[i], ARGV[2 * i], ARGV[2 * i + 1]
  if kind == 'm' then
    redis.call('SET', k, arg, 'PX', ARGV[1])
    out[i] = 1
  else
    local v = redis.call('GET', k)
    local hit = false
    if v and kind == 'c' then
      local at = tonumber(string.match(v, ':(%d+)$'))
      hit = at ~= nil and at <= tonumber(arg)
    elseif v then
      hit = string.match(v, '^(%d+):') == arg
    end
    if hit then out[i] = redis.call('DEL', k) else out[i] = 0 end
  end
end
return out";

/// Removal markers shared by the nodes: `SET` with the removal's token, `DEL` by a return,
/// compare-and-delete by the removal itself. An app's markers share its hash tag, so one
/// script does a whole batch of them, in order, in one round trip (also on a Redis Cluster).
pub(crate) struct RedisMarkers {
    pub client: Client,
    pub prefix: String,
    run: Script,
}

impl RedisMarkers {
    pub(crate) fn new(client: Client, prefix: String) -> Self {
        RedisMarkers {
            client,
            prefix,
            run: Script::from_lua(RUN),
        }
    }

    /// `{prefix:app}:wh:rm:<channel>[\n<user>]` for a marker named `app\n<channel>[\n<user>]`:
    /// the app's hash tag, as its cluster state has.
    fn key(&self, name: &str) -> String {
        let (app, rest) = app_of(name);
        format!("{{{}:{app}}}:wh:rm:{rest}", self.prefix)
    }

    /// One app's operations (`ops`, by index into `all`) in one script: their results.
    async fn run_tagged(
        &self,
        all: &[(String, Op)],
        ops: &[usize],
        ttl: Duration,
    ) -> Vec<(usize, Option<bool>)> {
        let mut keys = Vec::with_capacity(ops.len());
        let mut args = Vec::with_capacity(1 + 2 * ops.len());
        args.push(Value::from(ttl.as_millis().max(1) as i64));
        for &i in ops {
            let (name, op) = &all[i];
            keys.push(self.key(name));
            let (kind, arg) = match *op {
                Op::Mark { token, at_us } => ("m", format!("{token}:{at_us}")),
                Op::Claim { at_us } => ("c", at_us.to_string()),
                Op::ClaimOwn { token } => ("o", token.to_string()),
            };
            args.push(Value::from(kind));
            args.push(Value::from(arg));
        }
        let run = self.run.evalsha_with_reload(&self.client, keys, args);
        let answer: Option<Vec<i64>> = match tokio::time::timeout(COMMAND_TIMEOUT, run).await {
            Ok(Ok(answer)) => Some(answer),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "webhook removal markers not updated in Redis");
                None
            }
            Err(_) => {
                tracing::warn!("webhook removal markers not updated in Redis: timed out");
                None
            }
        };
        ops.iter()
            .enumerate()
            .map(|(n, &i)| {
                let result = answer.as_ref().and_then(|a| a.get(n)).map(|&r| r == 1);
                (i, result)
            })
            .collect()
    }
}

#[async_trait]
impl Markers for RedisMarkers {
    async fn mark(&self, name: &str, token: u64, at_us: u64, ttl: Duration) {
        let op = [(name.to_owned(), Op::Mark { token, at_us })];
        self.run(&op, ttl).await;
    }

    async fn claim(&self, name: &str, at_us: u64) -> Option<bool> {
        let op = [(name.to_owned(), Op::Claim { at_us })];
        self.run(&op, Duration::ZERO).await.pop().flatten()
    }

    async fn claim_own(&self, name: &str, token: u64) -> Option<bool> {
        let op = [(name.to_owned(), Op::ClaimOwn { token })];
        self.run(&op, Duration::ZERO).await.pop().flatten()
    }

    /// One script per app (its markers share a slot), the apps at once.
    async fn run(&self, ops: &[(String, Op)], ttl: Duration) -> Vec<Option<bool>> {
        let mut by_app: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, (name, _)) in ops.iter().enumerate() {
            by_app.entry(app_of(name).0).or_default().push(i);
        }
        let runs = by_app
            .values()
            .map(|indices| self.run_tagged(ops, indices, ttl));
        let mut results = vec![None; ops.len()];
        for (i, result) in join_all(runs).await.into_iter().flatten() {
            results[i] = result;
        }
        results
    }
}

/// A marker's name split into its app and the rest.
fn app_of(name: &str) -> (&str, &str) {
    name.split_once('\n').unwrap_or(("", name))
}

/// An endpoint's queue as a stream.
pub(crate) struct RedisQueue {
    stream: Arc<Stream>,
    /// To the writer task, which ends when this is dropped.
    incoming: mpsc::Sender<Pending>,
}

/// One endpoint's stream.
struct Stream {
    client: Client,
    key: String,
    consumer: String,
    written: Notify,
    min_idle: Duration,
    /// When this node last looked for entries left idle: XAUTOCLAIM walks the group's
    /// pending entries, hundreds of microseconds of Redis time with batches under way, and
    /// nothing can have become idle long enough in much less than `min_idle`.
    claimed_at: parking_lot::Mutex<Option<tokio::time::Instant>>,
    scripts: [Script; 5],
}

impl RedisQueue {
    /// Starts the task that writes into the stream.
    pub(crate) fn start(
        client: Client,
        key: String,
        consumer: String,
        capacity: usize,
        min_idle: Duration,
    ) -> Arc<Self> {
        let (incoming, rx) = mpsc::channel(capacity.max(1));
        let stream = Arc::new(Stream {
            client,
            key,
            consumer,
            written: Notify::new(),
            min_idle,
            claimed_at: parking_lot::Mutex::new(None),
            scripts: [PUSH, TAKE, KEEP, DONE, LENGTH].map(Script::from_lua),
        });
        tokio::spawn(stream.clone().write(rx, capacity));
        Arc::new(RedisQueue { stream, incoming })
    }
}

impl Stream {
    async fn write(self: Arc<Self>, mut rx: mpsc::Receiver<Pending>, capacity: usize) {
        let mut events = Vec::with_capacity(WRITE_BATCH);
        while rx.recv_many(&mut events, WRITE_BATCH).await > 0 {
            let mut args = vec![Value::from(capacity as i64)];
            for e in &events {
                args.push(Value::from(&*e.id));
                args.push(Value::from(&*e.json));
            }
            // Kept until Redis takes them: meanwhile new events wait in `incoming`, and
            // beyond its capacity are dropped.
            while let Err(e) = self.eval(0, args.clone()).await {
                tracing::warn!(error = %e, "webhooks not yet written to Redis; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            events.clear();
            self.written.notify_one();
        }
    }

    async fn eval(&self, script: usize, args: Vec<Value>) -> anyhow::Result<Value> {
        let run =
            self.scripts[script].evalsha_with_reload(&self.client, vec![self.key.clone()], args);
        Ok(tokio::time::timeout(COMMAND_TIMEOUT, run).await??)
    }

    async fn read(&self, max: usize) -> anyhow::Result<Vec<Pending>> {
        let claim = {
            let mut at = self.claimed_at.lock();
            let now = tokio::time::Instant::now();
            let due = at.is_none_or(|t| now.duration_since(t) >= self.min_idle / CLAIMS_PER_IDLE);
            if due {
                *at = Some(now);
            }
            due
        };
        let args = vec![
            Value::from(GROUP),
            Value::from(self.consumer.as_str()),
            Value::from(max as i64),
            Value::from(self.min_idle.as_millis() as i64),
            Value::from(if claim { "1" } else { "0" }),
        ];
        let Value::Array(items) = self.eval(1, args).await? else {
            return Ok(Vec::new());
        };
        let text = |v: &Value| Arc::<str>::from(v.as_string().unwrap_or_default());
        Ok(items
            .chunks_exact(3)
            .map(|t| Pending {
                entry: text(&t[0]),
                id: text(&t[1]),
                json: text(&t[2]),
            })
            .collect())
    }

    async fn entries(&self, script: usize, head: Vec<Value>, batch: &[Pending]) {
        let mut args = head;
        args.extend(batch.iter().map(|p| Value::from(&*p.entry)));
        if let Err(e) = self.eval(script, args).await {
            tracing::warn!(error = %e, "webhook queue not updated in Redis");
        }
    }
}

#[async_trait]
impl Queue for RedisQueue {
    fn push(&self, event: Pending) -> bool {
        self.incoming.try_send(event).is_ok()
    }

    async fn take(&self, max: usize, window: Duration) -> Option<Vec<Pending>> {
        let s = &self.stream;
        let read = |n| s.read(n);
        take_shared(read, &s.written, POLL, (max, window), "Redis").await
    }

    fn keep_every(&self) -> Option<Duration> {
        Some(self.stream.min_idle / 3)
    }

    async fn keep(&self, batch: &[Pending]) {
        let s = &self.stream;
        let head = vec![Value::from(GROUP), Value::from(s.consumer.as_str())];
        s.entries(2, head, batch).await;
    }

    async fn done(&self, batch: &[Pending]) {
        self.stream
            .entries(3, vec![Value::from(GROUP)], batch)
            .await;
    }

    /// The stream's length (shared by every node) and what this node has yet to write to it.
    async fn depth(&self) -> Option<u64> {
        let length = self.stream.eval(4, Vec::new()).await.ok()?.as_u64()?;
        Some(length + waiting(&self.incoming))
    }
}
