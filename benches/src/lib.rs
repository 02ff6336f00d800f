//! Workloads shared by the criterion benches and the benchmark harness.
//!
//! Why a generated mix rather than a sample capture or one repeated message: the costs we care about (framing,
//! classification, redaction, Arrow building, zstd) depend on message sizes and on how sizes and methods are
//! interleaved. One `ping` repeated a million times measures a branch predictor; a real MCP session is a few KB
//! of `tools/list`, many small `tools/call` round trips with answers from 100 B to 2 KB, the occasional 16 KB
//! base64 resource, progress and log notifications, and server-to-client requests. [`mix`] produces that, in
//! session order and with out-of-order answers, from a fixed xorshift seed: every run, on every machine, measures
//! the same bytes, so numbers from two runs or two commits compare.
//!
//! The workload functions ([`classify_all`], [`write_journal`], …) are what both the criterion benches and the
//! harness time, so the two always measure the same code.

pub mod e2e;
pub mod fuzz;
pub mod soak;

use std::io::Write;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use base64::Engine;
use bytes::Bytes;
use mcptape_datasets::annotate::Annotator;
use mcptape_datasets::journal::JournalWriter;
use mcptape_datasets::redact::{RedactionRules, classify_and_redact};
use mcptape_datasets::wire::envelope::classify;
use mcptape_datasets::wire::ndjson::NdjsonFramer;
use mcptape_datasets::wire::sse::SseDecoder;
use mcptape_datasets::{CaptureMeta, CaptureWriter, Direction, Frame, Kind, Transport, WriterOptions, schema, segment};
use serde_json::{Value, json};

/// Session id of every generated frame.
pub const SESSION: &str = "bench";
/// Protocol version the generated session negotiates.
pub const PROTOCOL_VERSION: &str = "2025-11-25";
/// Rows per record batch, as the capture writer batches by default.
pub const BATCH_ROWS: usize = 4096;
/// Read size used to feed the framers (a typical pipe / socket read).
pub const CHUNK: usize = 16 * 1024;
/// Largest line or event the framers keep whole (bigger ones are split); far above anything in the mix.
pub const MAX_MESSAGE: usize = 16 << 20;
/// Wall clock of the first frame: 2025-06-15T00:00:00Z.
const EPOCH_NS: i64 = 1_749_945_600_000_000_000;

/// xorshift64: deterministic, dependency-free, good enough to vary sizes and choices.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Uniform in `lo..hi` (lo < hi).
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below((hi - lo) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

#[rustfmt::skip]
const WORDS: [&str; 48] = [
    "the", "repository", "contains", "function", "request", "returned", "value", "error", "file", "line", "config",
    "server", "client", "result", "query", "table", "column", "index", "branch", "commit", "issue", "build", "test",
    "passed", "failed", "latency", "million", "rows", "matched", "pattern", "user", "document", "section", "summary",
    "deployment", "cluster", "region", "metric", "window", "update", "created", "pending", "review", "approved",
    "schema", "field", "string", "number",
];

/// Roughly `len` bytes of plausible prose.
fn prose(rng: &mut Rng, len: usize) -> String {
    let mut s = String::with_capacity(len + 16);
    while s.len() < len {
        if !s.is_empty() {
            s.push(if rng.chance(8) { '\n' } else { ' ' });
        }
        s.push_str(rng.pick(&WORDS));
        if rng.chance(10) {
            s.push_str(&rng.below(10_000).to_string());
        }
    }
    s
}

/// A tool the generated server offers: name, description, parameters (name, JSON type).
struct Tool {
    name: &'static str,
    description: &'static str,
    params: &'static [(&'static str, &'static str)],
}

#[rustfmt::skip]
const TOOLS: [Tool; 20] = [
    Tool { name: "search_code", description: "Search the repository for a regular expression and return matching lines",
           params: &[("pattern", "string"), ("path", "string"), ("max_results", "integer")] },
    Tool { name: "read_file", description: "Read a text file from the workspace, optionally a line range",
           params: &[("path", "string"), ("start_line", "integer"), ("end_line", "integer")] },
    Tool { name: "write_file", description: "Create or overwrite a file in the workspace",
           params: &[("path", "string"), ("content", "string")] },
    Tool { name: "list_directory", description: "List the entries of a directory with their sizes and kinds",
           params: &[("path", "string"), ("recursive", "boolean")] },
    Tool { name: "run_tests", description: "Run the test suite or a filtered subset and report failures",
           params: &[("filter", "string"), ("timeout_seconds", "integer")] },
    Tool { name: "git_log", description: "Show recent commits touching a path",
           params: &[("path", "string"), ("limit", "integer")] },
    Tool { name: "git_diff", description: "Show the diff between two revisions",
           params: &[("base", "string"), ("head", "string")] },
    Tool { name: "create_issue", description: "Open an issue in the tracker with a title, body and labels",
           params: &[("title", "string"), ("body", "string"), ("labels", "array")] },
    Tool { name: "get_issue", description: "Fetch an issue with its comments",
           params: &[("number", "integer")] },
    Tool { name: "sql_query", description: "Run a read-only SQL query against the analytics warehouse",
           params: &[("sql", "string"), ("limit", "integer")] },
    Tool { name: "describe_table", description: "Describe the columns, types and row count of a table",
           params: &[("table", "string")] },
    Tool { name: "fetch_url", description: "Fetch a web page and return it as Markdown",
           params: &[("url", "string"), ("max_length", "integer")] },
    Tool { name: "web_search", description: "Search the web and return titles, links and snippets",
           params: &[("query", "string"), ("count", "integer")] },
    Tool { name: "get_metrics", description: "Query a time series for a service over a window",
           params: &[("service", "string"), ("metric", "string"), ("window", "string")] },
    Tool { name: "tail_logs", description: "Return the last lines of a service's logs, optionally filtered",
           params: &[("service", "string"), ("lines", "integer"), ("grep", "string")] },
    Tool { name: "list_deployments", description: "List deployments in a cluster and their status",
           params: &[("cluster", "string"), ("namespace", "string")] },
    Tool { name: "restart_deployment", description: "Restart a deployment and wait until it is ready",
           params: &[("cluster", "string"), ("name", "string"), ("wait", "boolean")] },
    Tool { name: "send_message", description: "Post a message to a chat channel",
           params: &[("channel", "string"), ("text", "string")] },
    Tool { name: "calendar_events", description: "List calendar events between two dates",
           params: &[("from", "string"), ("to", "string")] },
    Tool { name: "translate_text", description: "Translate text into a target language",
           params: &[("text", "string"), ("target_language", "string")] },
];

fn tool_schema(tool: &Tool) -> Value {
    let mut properties = serde_json::Map::new();
    for (name, ty) in tool.params {
        let mut p = json!({ "type": ty, "description": format!("The {} to use.", name.replace('_', " ")) });
        if *ty == "array" {
            p["items"] = json!({ "type": "string" });
        }
        if *ty == "integer" {
            p["minimum"] = json!(0);
        }
        properties.insert((*name).to_string(), p);
    }
    json!({
        "name": tool.name,
        "title": tool.name.replace('_', " "),
        "description": tool.description,
        "inputSchema": {
            "type": "object",
            "properties": properties,
            "required": [tool.params[0].0],
            "additionalProperties": false,
        },
        "annotations": { "readOnlyHint": !tool.name.starts_with("write") && !tool.name.starts_with("restart") },
    })
}

fn arguments(rng: &mut Rng, tool: &Tool) -> Value {
    let mut args = serde_json::Map::new();
    for (name, ty) in tool.params {
        let v = match *ty {
            "integer" => json!(rng.below(200)),
            "boolean" => json!(rng.chance(50)),
            "array" => json!([rng.pick(&WORDS), rng.pick(&WORDS)]),
            _ => {
                let len = rng.range(4, 40);
                json!(prose(rng, len))
            }
        };
        args.insert((*name).to_string(), v);
    }
    Value::Object(args)
}

/// A `tools/call` awaiting its answer.
struct Call {
    id: u64,
    tool: usize,
    progress_token: Option<String>,
    progress: u64,
}

/// The session being generated.
struct Gen {
    rng: Rng,
    out: Vec<(Direction, Bytes)>,
    client_id: u64,
    server_id: u64,
    in_flight: Vec<Call>,
}

impl Gen {
    fn send(&mut self, dir: Direction, v: Value) {
        let bytes = serde_json::to_vec(&v).expect("a JSON value serializes");
        self.out.push((dir, Bytes::from(bytes)));
    }

    fn request(&mut self, dir: Direction, method: &str, params: Value) -> u64 {
        let id = match dir {
            Direction::C2s => &mut self.client_id,
            Direction::S2c => &mut self.server_id,
        };
        let this = *id;
        *id += 1;
        let mut v = json!({ "jsonrpc": "2.0", "id": this, "method": method });
        if !params.is_null() {
            v["params"] = params;
        }
        self.send(dir, v);
        this
    }

    fn result(&mut self, dir: Direction, id: u64, result: Value) {
        self.send(dir, json!({ "jsonrpc": "2.0", "id": id, "result": result }));
    }

    fn notify(&mut self, dir: Direction, method: &str, params: Value) {
        let mut v = json!({ "jsonrpc": "2.0", "method": method });
        if !params.is_null() {
            v["params"] = params;
        }
        self.send(dir, v);
    }

    fn handshake(&mut self) {
        let id = self.request(
            Direction::C2s,
            "initialize",
            json!({
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": { "roots": { "listChanged": true }, "sampling": {}, "elicitation": {} },
                "clientInfo": { "name": "bench-client", "title": "Bench Client", "version": "1.4.2" },
            }),
        );
        self.result(
            Direction::S2c,
            id,
            json!({
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {
                    "tools": { "listChanged": true },
                    "resources": { "subscribe": true, "listChanged": true },
                    "prompts": { "listChanged": false },
                    "logging": {},
                    "completions": {},
                },
                "serverInfo": { "name": "bench-server", "title": "Bench Server", "version": "0.9.1" },
                "instructions": "Tools for a software team: code, issues, data, operations and chat.",
            }),
        );
        self.notify(Direction::C2s, "notifications/initialized", Value::Null);
        let id = self.request(Direction::C2s, "tools/list", Value::Null);
        let tools: Vec<Value> = TOOLS.iter().map(tool_schema).collect();
        self.result(Direction::S2c, id, json!({ "tools": tools }));
    }

    fn call(&mut self) {
        let tool = self.rng.below(TOOLS.len() as u64) as usize;
        let mut params = json!({ "name": TOOLS[tool].name, "arguments": arguments(&mut self.rng, &TOOLS[tool]) });
        let progress_token = self.rng.chance(25).then(|| format!("pt-{}", self.client_id));
        if let Some(token) = &progress_token {
            params["_meta"] = json!({ "progressToken": token });
        }
        let id = self.request(Direction::C2s, "tools/call", params);
        self.in_flight.push(Call {
            id,
            tool,
            progress_token,
            progress: 0,
        });
    }

    /// Answers one in-flight call, not necessarily the oldest.
    fn answer(&mut self) {
        let k = self.rng.below(self.in_flight.len() as u64) as usize;
        let call = self.in_flight.swap_remove(k);
        if self.rng.chance(4) {
            let v = json!({
                "jsonrpc": "2.0",
                "id": call.id,
                "error": {
                    "code": -32602,
                    "message": format!("Invalid params for tool {}", TOOLS[call.tool].name),
                    "data": { "field": TOOLS[call.tool].params[0].0, "reason": "expected a non-empty value" },
                },
            });
            self.send(Direction::S2c, v);
            return;
        }
        let len = self.rng.range(100, 2000);
        let text = prose(&mut self.rng, len);
        let is_error = self.rng.chance(3);
        self.result(
            Direction::S2c,
            call.id,
            json!({ "content": [{ "type": "text", "text": text }], "isError": is_error }),
        );
    }

    fn notification(&mut self) {
        if self.rng.chance(60) {
            let total = 10;
            let open: Vec<usize> = (0..self.in_flight.len())
                .filter(|&i| self.in_flight[i].progress_token.is_some() && self.in_flight[i].progress < total)
                .collect();
            if !open.is_empty() {
                let call = &mut self.in_flight[self.rng.pick(&open)];
                call.progress += 1;
                let params = json!({
                    "progressToken": call.progress_token,
                    "progress": call.progress,
                    "total": total,
                    "message": format!("step {} of {total}", call.progress),
                });
                self.notify(Direction::S2c, "notifications/progress", params);
                return;
            }
        }
        let level = self.rng.pick(&["debug", "info", "info", "notice", "warning", "error"]);
        let len = self.rng.range(40, 300);
        let data = json!({ "message": prose(&mut self.rng, len), "elapsed_ms": self.rng.below(5000) });
        self.notify(
            Direction::S2c,
            "notifications/message",
            json!({ "level": level, "logger": "bench-server", "data": data }),
        );
    }

    fn read_resource(&mut self) {
        let n = self.rng.below(64);
        let uri = format!("file:///workspace/assets/diagram-{n}.png");
        let id = self.request(Direction::C2s, "resources/read", json!({ "uri": uri }));
        // 12 KiB of bytes is 16 KiB of base64.
        let raw: Vec<u8> = (0..12 * 1024 / 8).flat_map(|_| self.rng.next().to_le_bytes()).collect();
        let blob = base64::engine::general_purpose::STANDARD.encode(raw);
        self.result(
            Direction::S2c,
            id,
            json!({ "contents": [{ "uri": uri, "mimeType": "image/png", "blob": blob }] }),
        );
    }

    fn other(&mut self) {
        match self.rng.below(100) {
            0..25 => {
                let id = self.request(Direction::C2s, "ping", Value::Null);
                self.result(Direction::S2c, id, json!({}));
            }
            25..35 => {
                let id = self.request(Direction::S2c, "ping", Value::Null);
                self.result(Direction::C2s, id, json!({}));
            }
            35..55 => {
                let len = self.rng.range(200, 1200);
                let question = prose(&mut self.rng, len);
                let id = self.request(
                    Direction::S2c,
                    "sampling/createMessage",
                    json!({
                        "messages": [{ "role": "user", "content": { "type": "text", "text": question } }],
                        "systemPrompt": "Summarize the findings for an engineer in three sentences.",
                        "modelPreferences": { "hints": [{ "name": "claude" }], "intelligencePriority": 0.8 },
                        "maxTokens": 400,
                    }),
                );
                let len = self.rng.range(150, 600);
                let answer = prose(&mut self.rng, len);
                self.result(
                    Direction::C2s,
                    id,
                    json!({
                        "role": "assistant",
                        "content": { "type": "text", "text": answer },
                        "model": "bench-model-1",
                        "stopReason": "endTurn",
                    }),
                );
            }
            55..65 => {
                let id = self.request(Direction::C2s, "resources/list", Value::Null);
                let resources: Vec<Value> = (0..8)
                    .map(|i| {
                        json!({
                            "uri": format!("file:///workspace/assets/diagram-{i}.png"),
                            "name": format!("diagram-{i}.png"),
                            "mimeType": "image/png",
                        })
                    })
                    .collect();
                self.result(
                    Direction::S2c,
                    id,
                    json!({ "resources": resources, "nextCursor": "c2" }),
                );
            }
            65..75 => {
                let id = self.request(
                    Direction::C2s,
                    "prompts/get",
                    json!({ "name": "review_change", "arguments": { "change": "1234" } }),
                );
                let len = self.rng.range(300, 900);
                let text = prose(&mut self.rng, len);
                self.result(
                    Direction::S2c,
                    id,
                    json!({
                        "description": "Review a change",
                        "messages": [{ "role": "user", "content": { "type": "text", "text": text } }],
                    }),
                );
            }
            75..85 => {
                let id = self.request(
                    Direction::C2s,
                    "completion/complete",
                    json!({
                        "ref": { "type": "ref/prompt", "name": "review_change" },
                        "argument": { "name": "change", "value": "12" },
                    }),
                );
                self.result(
                    Direction::S2c,
                    id,
                    json!({ "completion": { "values": ["1201", "1234", "1288"], "total": 3, "hasMore": false } }),
                );
            }
            85..93 => {
                let id = self.request(Direction::S2c, "roots/list", Value::Null);
                self.result(
                    Direction::C2s,
                    id,
                    json!({ "roots": [{ "uri": "file:///workspace", "name": "workspace" }] }),
                );
            }
            _ => {
                // A call with arguments the server rejects.
                let id = self.request(
                    Direction::C2s,
                    "tools/call",
                    json!({ "name": "get_issue", "arguments": { "number": "not a number" } }),
                );
                let v = json!({
                    "jsonrpc": "2.0",
                    "id": id,
                    "error": { "code": -32602, "message": "Invalid params: number must be an integer" },
                });
                self.send(Direction::S2c, v);
            }
        }
    }

    /// One step, chosen so that messages come out roughly 60% `tools/call`, 10% progress and log notifications,
    /// 5% `resources/read` and 25% the rest (by message count: the weights are fraction / messages per step).
    fn step(&mut self) {
        match self.rng.below(1000) {
            0..706 => {
                if self.in_flight.is_empty() || (self.in_flight.len() < 4 && self.rng.chance(50)) {
                    self.call();
                } else {
                    self.answer();
                }
            }
            706..824 => self.notification(),
            824..853 => self.read_resource(),
            _ => self.other(),
        }
    }
}

/// `n` JSON-RPC messages (NDJSON payloads, without their newline) of one MCP session, in the order a tap between
/// a client and a server would see them: handshake, `tools/list`, then a steady mix with up to four `tools/call`s
/// in flight and answered out of order. Every request in the mix is answered (except when `n` cuts the handshake).
/// Deterministic: the same `n` always gives the same bytes.
pub fn mix(n: usize) -> Vec<(Direction, Bytes)> {
    let mut g = Gen {
        rng: Rng(0x9E37_79B9_7F4A_7C15),
        out: Vec::with_capacity(n + 8),
        client_id: 0,
        server_id: 0,
        in_flight: Vec::new(),
    };
    g.handshake();
    loop {
        let budget = n.saturating_sub(g.out.len() + g.in_flight.len());
        match budget {
            0 => break,
            // Every step but a notification can take two messages of the budget.
            1 => g.notification(),
            _ => g.step(),
        }
    }
    while !g.in_flight.is_empty() {
        g.answer();
    }
    g.out.truncate(n);
    g.out
}

/// [`mix`] as annotated frames of one stdio session: seq from 0, `t_ns` about 250 µs apart, `ts_ns` from a fixed
/// date, kind/method/id/latency/version filled by the [`Annotator`] exactly as the tap fills them.
pub fn frames(n: usize) -> Vec<Frame> {
    let mut a = Annotator::new();
    let mut frames = raw_frames(n);
    for f in &mut frames {
        a.annotate(f);
    }
    frames
}

/// [`frames`] before annotation (kind `Invalid`, no derived columns): the input of the annotator benchmark.
pub fn raw_frames(n: usize) -> Vec<Frame> {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut t_ns = 0u64;
    mix(n)
        .into_iter()
        .enumerate()
        .map(|(seq, (dir, payload))| {
            let mut f = Frame::new(SESSION, seq as u64, dir, Transport::Stdio, Kind::Invalid, payload);
            f.t_ns = t_ns;
            f.ts_ns = EPOCH_NS + t_ns as i64;
            t_ns += 150_000 + rng.below(200_000);
            f
        })
        .collect()
}

/// Total payload bytes of a mix.
pub fn payload_bytes(mix: &[(Direction, Bytes)]) -> u64 {
    mix.iter().map(|(_, p)| p.len() as u64).sum()
}

/// Total payload bytes of frames.
pub fn frame_bytes(frames: &[Frame]) -> u64 {
    frames.iter().map(|f| f.payload.len() as u64).sum()
}

/// The mix as one stdio stream: each payload followed by `\n`.
pub fn ndjson_stream(mix: &[(Direction, Bytes)]) -> Bytes {
    let mut out = Vec::with_capacity(payload_bytes(mix) as usize + mix.len());
    for (_, p) in mix {
        out.extend_from_slice(p);
        out.push(b'\n');
    }
    Bytes::from(out)
}

/// The mix as one SSE body: each payload as a `data: ...\n\n` event.
pub fn sse_stream(mix: &[(Direction, Bytes)]) -> Bytes {
    let mut out = Vec::with_capacity(payload_bytes(mix) as usize + 8 * mix.len());
    for (_, p) in mix {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(p);
        out.extend_from_slice(b"\n\n");
    }
    Bytes::from(out)
}

/// `stream` cut into reads of `size` bytes (zero-copy slices).
pub fn chunks(stream: &Bytes, size: usize) -> Vec<Bytes> {
    (0..stream.len())
        .step_by(size)
        .map(|start| stream.slice(start..(start + size).min(stream.len())))
        .collect()
}

/// A `tools/call` request that carries secrets (an API key and a password) among ordinary arguments.
pub fn secret_payload() -> Bytes {
    Bytes::from_static(
        concat!(
            r#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"sql_query","arguments":{"#,
            r#""sql":"select region, count(*) from orders group by region","limit":100,"connection":{"#,
            r#""host":"warehouse.internal","user":"analyst","password":"hunter2-but-longer","#,
            r#""api_key":"sk-live-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"}},"_meta":{"progressToken":"pt-42"}}}"#,
        )
        .as_bytes(),
    )
}

/// The capture metadata of every benchmark file.
pub fn meta() -> CaptureMeta {
    CaptureMeta::new("stdio", "mcptape-benches mix")
}

/// Frames as record batches of [`BATCH_ROWS`] rows, as the capture writer would build them.
pub fn batches(frames: &[Frame]) -> Vec<RecordBatch> {
    frames.chunks(BATCH_ROWS).map(schema::to_batch).collect()
}

// ---- workloads: what the benches and the harness time ----

/// Classifies every message; returns how many were not `Invalid`.
pub fn classify_all(mix: &[(Direction, Bytes)]) -> usize {
    mix.iter().filter(|(_, p)| classify(p).kind != Kind::Invalid).count()
}

/// Baseline for classification: a full `serde_json::Value` parse of every message.
pub fn parse_all(mix: &[(Direction, Bytes)]) -> usize {
    mix.iter()
        .filter(|(_, p)| serde_json::from_slice::<Value>(p).is_ok())
        .count()
}

/// Frames an NDJSON stream delivered in `chunks`; returns the number of pieces.
pub fn frame_ndjson(chunks: &[Bytes]) -> usize {
    let mut framer = NdjsonFramer::new(MAX_MESSAGE);
    let mut pieces = 0;
    for c in chunks {
        framer.push(c, |_| pieces += 1);
    }
    framer.finish(|_| pieces += 1);
    pieces
}

/// Decodes an SSE body delivered in `chunks`; returns the number of events.
pub fn decode_sse(chunks: &[Bytes]) -> usize {
    let mut decoder = SseDecoder::new(MAX_MESSAGE);
    let mut events = 0;
    for c in chunks {
        decoder.push(c, |_| events += 1);
    }
    decoder.finish(|_| events += 1);
    events
}

/// Redacts every message; returns how many were changed.
pub fn redact_all(rules: &RedactionRules, mix: &[(Direction, Bytes)]) -> usize {
    mix.iter().filter(|(_, p)| rules.payload(p).is_some()).count()
}

/// Classifies and redacts every message in one walk each; returns how many were not `Invalid`.
pub fn classify_and_redact_all(rules: &RedactionRules, mix: &[(Direction, Bytes)]) -> usize {
    mix.iter()
        .filter(|(_, p)| classify_and_redact(p, rules).0.kind != Kind::Invalid)
        .count()
}

/// Annotates and redacts frames with a fresh annotator, as the tap's writer task does (one walk per payload).
pub fn annotate_and_redact_all(rules: &RedactionRules, mut frames: Vec<Frame>) -> Vec<Frame> {
    let mut a = Annotator::new();
    for f in &mut frames {
        a.annotate_and_redact(f, rules);
    }
    frames
}

/// Annotates frames with a fresh annotator (classification only, no redaction).
pub fn annotate_all(mut frames: Vec<Frame>) -> Vec<Frame> {
    let mut a = Annotator::new();
    for f in &mut frames {
        a.annotate(f);
    }
    frames
}

/// Writes a journal at `path`: create, append and flush every batch, finish.
pub fn write_journal(path: &Path, meta: &CaptureMeta, batches: &[RecordBatch]) -> anyhow::Result<PathBuf> {
    let mut j = JournalWriter::create(path, meta)?;
    for b in batches {
        j.append(b)?;
        j.flush()?;
    }
    Ok(j.finish()?)
}

/// Writes a Parquet segment at `path` (zstd, `.tmp` + fsync + rename); returns the rows written.
pub fn write_parquet(path: &Path, meta: &CaptureMeta, batches: &[RecordBatch]) -> anyhow::Result<u64> {
    Ok(segment::write_segment(path, meta, batches)?)
}

/// The whole capture path: a [`CaptureWriter`] in `dir` takes every frame, then finishes (journal -> Parquet).
pub fn capture(dir: &Path, frames: Vec<Frame>) -> anyhow::Result<Vec<PathBuf>> {
    let mut w = CaptureWriter::create(WriterOptions::new(dir, "bench", meta()))?;
    for f in frames {
        w.append(f)?;
    }
    Ok(w.finish()?)
}

/// Baseline for storage: what a naive recorder does, append each payload and a newline to a buffered file.
pub fn write_raw_ndjson(path: &Path, mix: &[(Direction, Bytes)]) -> anyhow::Result<u64> {
    let mut w = std::io::BufWriter::with_capacity(1 << 16, std::fs::File::create(path)?);
    let mut n = 0;
    for (_, p) in mix {
        w.write_all(p)?;
        w.write_all(b"\n")?;
        n += p.len() as u64 + 1;
    }
    w.flush()?;
    Ok(n)
}

/// Removes a file or folder when dropped: benchmark outputs are deleted outside the timed section.
#[derive(Debug)]
pub struct RemoveOnDrop(pub PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if self.0.is_dir() {
            let _ = std::fs::remove_dir_all(&self.0);
        } else {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn the_mix_classifies_as_a_real_session_would() {
        let n = 3000;
        let mix = mix(n);
        assert_eq!(mix.len(), n);
        assert_eq!(mix, super::mix(n), "deterministic");
        for (i, (_, p)) in mix.iter().enumerate() {
            assert!(serde_json::from_slice::<Value>(p).is_ok(), "message {i} is JSON");
            assert!(!p.contains(&b'\n'), "message {i} is one NDJSON line");
            assert_ne!(
                classify(p).kind,
                Kind::Invalid,
                "message {i}: {}",
                String::from_utf8_lossy(p)
            );
        }

        let frames = frames(n);
        let mut by_method: HashMap<&str, usize> = HashMap::new();
        let mut requests = 0;
        let mut answers = 0;
        for f in &frames {
            assert_ne!(f.kind, Kind::Invalid);
            assert_eq!(f.protocol_version.as_deref(), Some(PROTOCOL_VERSION), "seq {}", f.seq);
            if f.kind.is_answer() {
                answers += 1;
                assert!(f.method.is_some(), "answer at seq {} gets its request's method", f.seq);
                assert!(f.latency_ns.is_some());
            }
            if f.kind == Kind::Request {
                requests += 1;
            }
            *by_method.entry(f.method.as_deref().unwrap_or("")).or_default() += 1;
        }
        assert_eq!(requests, answers, "every request is answered");
        assert!(
            frames
                .windows(2)
                .all(|w| w[0].t_ns < w[1].t_ns && w[0].ts_ns < w[1].ts_ns)
        );

        let share = |m: &str| by_method.get(m).copied().unwrap_or(0) as f64 / n as f64;
        let notifications = share("notifications/progress") + share("notifications/message");
        assert!(
            (0.5..0.7).contains(&share("tools/call")),
            "tools/call {}",
            share("tools/call")
        );
        assert!((0.05..0.15).contains(&notifications), "notifications {notifications}");
        assert!(share("notifications/progress") > 0.0);
        assert!(
            (0.03..0.08).contains(&share("resources/read")),
            "resources/read {}",
            share("resources/read")
        );
        for m in [
            "initialize",
            "tools/list",
            "ping",
            "sampling/createMessage",
            "roots/list",
            "completion/complete",
        ] {
            assert!(by_method.contains_key(m), "{m} in the mix");
        }
        let errors: Vec<_> = frames.iter().filter(|f| f.kind == Kind::Error).collect();
        assert!(!errors.is_empty() && errors.iter().all(|f| f.error_code == Some(-32602)));
        // Directions: the sampling and roots requests go server to client and are answered by the client.
        assert!(
            frames
                .iter()
                .any(|f| f.kind == Kind::Request && f.direction == Direction::S2c)
        );

        let tools_list = frames
            .iter()
            .find(|f| f.kind == Kind::Response && f.method.as_deref() == Some("tools/list"));
        assert!(tools_list.is_some_and(|f| f.payload.len() > 3000));
        let blob = frames
            .iter()
            .find(|f| f.kind == Kind::Response && f.method.as_deref() == Some("resources/read"));
        assert!(blob.is_some_and(|f| (16_000..17_000).contains(&f.payload.len())));
    }

    #[test]
    fn small_mixes_keep_their_length() {
        for n in [0, 1, 4, 5, 6, 7, 50] {
            assert_eq!(mix(n).len(), n);
        }
    }

    #[test]
    fn the_mix_has_no_secrets_and_the_secret_payload_does() {
        let rules = RedactionRules::default();
        assert_eq!(redact_all(&rules, &mix(2000)), 0, "the no-secret fast path");
        let redacted = rules.payload(&secret_payload()).expect("secrets found");
        let text = String::from_utf8_lossy(&redacted);
        assert!(!text.contains("hunter2") && !text.contains("sk-live"), "{text}");
        assert!(text.contains("pt-42"), "progress tokens are kept: {text}");
    }

    #[test]
    fn the_writers_one_walk_path_gives_what_the_separate_steps_give() {
        let rules = RedactionRules::default();
        let mix = mix(1000);
        assert_eq!(classify_and_redact_all(&rules, &mix), classify_all(&mix));
        assert_eq!(annotate_and_redact_all(&rules, raw_frames(1000)), frames(1000));
    }

    #[test]
    fn framers_see_every_message() {
        let mix = mix(1000);
        assert_eq!(frame_ndjson(&chunks(&ndjson_stream(&mix), CHUNK)), mix.len());
        assert_eq!(decode_sse(&chunks(&sse_stream(&mix), CHUNK)), mix.len());
        assert_eq!(parse_all(&mix), mix.len());
    }

    #[test]
    fn storage_workloads_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let frames = frames(500);
        let batches = batches(&frames);
        let j = write_journal(&dir.path().join("j.journal"), &meta(), &batches).unwrap();
        let contents = mcptape_datasets::journal::read_journal_file(&j).unwrap();
        assert!(contents.damage.is_none());
        assert_eq!(
            write_parquet(&dir.path().join("s.parquet"), &meta(), &batches).unwrap(),
            500
        );
        let segments = capture(&dir.path().join("cap"), frames).unwrap();
        assert_eq!(segments.len(), 1);
        assert!(write_raw_ndjson(&dir.path().join("raw.ndjson"), &mix(500)).unwrap() > 0);
    }
}
