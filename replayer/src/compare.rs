//! Comparing a live answer with the recorded one, and carrying over what a live server mints.
//!
//! Comparison is on parsed JSON (key order never matters), minus ignore rules given as JSON pointers in which a
//! segment `*` matches any one key or index and `**` any number of them. `--ignore-volatile` adds [`VOLATILE`]:
//! fields known to differ between two runs of the same server.
//!
//! Rewriting: a live server mints values the client must echo (task ids, subscription ids, multi-round-trip
//! `requestState`, pagination cursors). [`Rewrites::learn`] pairs recorded and live answers and remembers
//! recorded → live for those keys; [`Rewrites::apply`] puts the live values into the client's later messages.

use std::collections::HashMap;

use serde_json::Value;

/// Fields that differ between two runs of the same server (`--ignore-volatile`), as pointer patterns.
pub const VOLATILE: &[&str] = &[
    "**/_meta",
    "**/timestamp",
    "**/createdAt",
    "**/updatedAt",
    "**/lastModified",
    "**/lastUpdatedAt",
    "**/taskId",
    "**/requestState",
    "**/subscriptionId",
    "**/nextCursor",
    "**/ttl",
    "**/pollInterval",
];

/// Keys whose string values a live server mints and the client echoes.
pub const MINTED: &[&str] = &["taskId", "requestState", "subscriptionId", "nextCursor", "cursor"];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Any,
    AnyDepth,
}

/// Pointer patterns of values to leave out of comparisons.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<Vec<Seg>>,
}

impl Ignore {
    /// Parses pointer patterns (`/result/content/*/text`, `**/_meta`); `volatile` adds [`VOLATILE`].
    pub fn new(pointers: &[String], volatile: bool) -> Result<Self, String> {
        let mut patterns = Vec::new();
        let extra: Vec<String> = if volatile {
            VOLATILE.iter().map(|s| s.to_string()).collect()
        } else {
            vec![]
        };
        for p in pointers.iter().chain(&extra) {
            patterns.push(parse_pattern(p)?);
        }
        Ok(Ignore { patterns })
    }

    fn ignored(&self, path: &[String]) -> bool {
        self.patterns.iter().any(|p| matches(p, path))
    }
}

fn parse_pattern(p: &str) -> Result<Vec<Seg>, String> {
    let rest = if let Some(r) = p.strip_prefix('/') {
        r
    } else if p.starts_with("**") {
        p
    } else {
        return Err(format!("--ignore {p:?}: a JSON pointer starts with `/` (or `**`)"));
    };
    Ok(rest
        .split('/')
        .map(|s| match s {
            "*" => Seg::Any,
            "**" => Seg::AnyDepth,
            s => Seg::Key(s.replace("~1", "/").replace("~0", "~")),
        })
        .collect())
}

fn matches(pat: &[Seg], path: &[String]) -> bool {
    match pat.split_first() {
        None => true, // a pattern matches everything below the point it names
        Some((Seg::AnyDepth, rest)) => (0..=path.len()).any(|skip| matches(rest, &path[skip..])),
        Some((seg, rest)) => match path.split_first() {
            None => false,
            Some((head, tail)) => (matches!(seg, Seg::Any) || *seg == Seg::Key(head.clone())) && matches(rest, tail),
        },
    }
}

/// A pointer as RFC 6901 text.
pub fn pointer(path: &[String]) -> String {
    path.iter()
        .map(|s| format!("/{}", s.replace('~', "~0").replace('/', "~1")))
        .collect()
}

pub use mcptape_reports::replay::Difference;

/// Differences between two messages, at most `limit` of them, ignoring `jsonrpc` and `id`.
pub fn diff(recorded: &Value, live: &Value, ignore: &Ignore, limit: usize) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut path = Vec::new();
    walk(recorded, live, ignore, &mut path, &mut out, limit);
    out
}

fn walk(r: &Value, l: &Value, ignore: &Ignore, path: &mut Vec<String>, out: &mut Vec<Difference>, limit: usize) {
    if out.len() >= limit || ignore.ignored(path) {
        return;
    }
    if path.len() == 1 && (path[0] == "jsonrpc" || path[0] == "id") {
        return;
    }
    match (r, l) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))).collect();
            keys.sort();
            for k in keys {
                path.push(k.clone());
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => walk(x, y, ignore, path, out, limit),
                    (x, y) => {
                        if !ignore.ignored(path) && out.len() < limit {
                            out.push(Difference {
                                pointer: pointer(path),
                                recorded: x.cloned(),
                                live: y.cloned(),
                            });
                        }
                    }
                }
                path.pop();
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for i in 0..a.len().max(b.len()) {
                path.push(i.to_string());
                match (a.get(i), b.get(i)) {
                    (Some(x), Some(y)) => walk(x, y, ignore, path, out, limit),
                    (x, y) => {
                        if !ignore.ignored(path) && out.len() < limit {
                            out.push(Difference {
                                pointer: pointer(path),
                                recorded: x.cloned(),
                                live: y.cloned(),
                            });
                        }
                    }
                }
                path.pop();
            }
        }
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => {}
        (a, b) if a == b => {}
        (a, b) => out.push(Difference {
            pointer: pointer(path),
            recorded: Some(a.clone()),
            live: Some(b.clone()),
        }),
    }
}

/// What a server's transport session id is compared as.
pub const SESSION_MASK: &str = "<mcp-session-id>";

/// Replaces a transport session id inside string values by [`SESSION_MASK`]: in a live answer the live id, in a
/// recorded one every token whose hash is the recorded (hashed) `Mcp-Session-Id`. Servers that echo their session
/// id then compare equal across sessions.
pub fn mask_session(v: &mut Value, live: Option<&str>, recorded_hash: Option<&str>) {
    match v {
        Value::String(s) => {
            if let Some(id) = live.filter(|id| !id.is_empty() && s.contains(*id)) {
                *s = s.replace(id, SESSION_MASK);
            }
            if let Some(hash) = recorded_hash {
                let tokens: Vec<&str> = s
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                    .filter(|t| t.len() >= 8)
                    .collect();
                let hits: Vec<String> = tokens
                    .into_iter()
                    .filter(|t| mcptape_datasets::redact::RedactionRules::hash(t) == hash)
                    .map(str::to_string)
                    .collect();
                for t in hits {
                    *s = s.replace(&t, SESSION_MASK);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| mask_session(x, live, recorded_hash)),
        Value::Object(m) => m.values_mut().for_each(|x| mask_session(x, live, recorded_hash)),
        _ => {}
    }
}

/// Values minted by the live server, recorded → live.
#[derive(Debug, Clone, Default)]
pub struct Rewrites {
    values: HashMap<String, String>,
    /// Multi-round-trip `inputRequests` keys, recorded → live.
    input_keys: HashMap<String, String>,
}

impl Rewrites {
    /// Learns from a recorded answer and its live counterpart.
    pub fn learn(&mut self, recorded: &Value, live: &Value) {
        self.walk_learn(recorded, live);
        let inputs = |v: &Value| v.pointer("/result/inputRequests").and_then(Value::as_object).cloned();
        if let (Some(r), Some(l)) = (inputs(recorded), inputs(live)) {
            // Keys are server-assigned: pair them by method, in order.
            let method = |v: &Value| v.get("method").and_then(Value::as_str).unwrap_or("").to_string();
            let mut used = std::collections::HashSet::new();
            for (rk, rv) in &r {
                if let Some((lk, _)) = l
                    .iter()
                    .find(|(lk, lv)| !used.contains(*lk) && method(lv) == method(rv))
                {
                    used.insert(lk.clone());
                    if lk != rk {
                        self.input_keys.insert(rk.clone(), lk.clone());
                    }
                }
            }
        }
    }

    fn walk_learn(&mut self, r: &Value, l: &Value) {
        match (r, l) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, x) in a {
                    let Some(y) = b.get(k) else { continue };
                    if let (true, Value::String(xs), Value::String(ys)) = (MINTED.contains(&k.as_str()), x, y) {
                        if xs != ys {
                            self.values.insert(xs.clone(), ys.clone());
                        }
                    } else {
                        self.walk_learn(x, y);
                    }
                }
            }
            (Value::Array(a), Value::Array(b)) => {
                for (x, y) in a.iter().zip(b) {
                    self.walk_learn(x, y);
                }
            }
            _ => {}
        }
    }

    /// True when nothing has been learned (messages can go out as recorded, byte for byte).
    pub fn is_empty(&self) -> bool {
        self.values.is_empty() && self.input_keys.is_empty()
    }

    /// Puts live values into a client message; returns whether anything changed.
    pub fn apply(&self, v: &mut Value) -> bool {
        if self.is_empty() {
            return false;
        }
        self.walk_apply(v, false)
    }

    fn walk_apply(&self, v: &mut Value, in_input_responses: bool) -> bool {
        let mut changed = false;
        match v {
            Value::String(s) => {
                if let Some(live) = self.values.get(s.as_str()) {
                    *s = live.clone();
                    changed = true;
                }
            }
            Value::Object(map) => {
                if in_input_responses && !self.input_keys.is_empty() {
                    let renamed: Vec<(String, Value)> = std::mem::take(map)
                        .into_iter()
                        .map(|(k, v)| match self.input_keys.get(&k) {
                            Some(live) => {
                                changed = true;
                                (live.clone(), v)
                            }
                            None => (k, v),
                        })
                        .collect();
                    map.extend(renamed);
                }
                for (k, child) in map.iter_mut() {
                    changed |= self.walk_apply(child, k == "inputResponses");
                }
            }
            Value::Array(items) => {
                for child in items {
                    changed |= self.walk_apply(child, false);
                }
            }
            _ => {}
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_does_not_matter_and_differences_are_named_by_pointer() {
        let r = json!({"jsonrpc":"2.0","id":1,"result":{"a":1,"b":[1,2,{"c":"x"}],"gone":true}});
        let l = json!({"result":{"b":[1,2,{"c":"y"}],"a":1.0,"new":null},"id":9,"jsonrpc":"2.0"});
        let d = diff(&r, &l, &Ignore::default(), 10);
        let ptrs: Vec<&str> = d.iter().map(|d| d.pointer.as_str()).collect();
        assert_eq!(ptrs, ["/result/b/2/c", "/result/gone", "/result/new"]);
        assert_eq!(d[0].recorded, Some(json!("x")));
        assert_eq!(d[0].live, Some(json!("y")));
        assert_eq!(d[1].live, None);
        assert_eq!(d[2].recorded, None);
    }

    #[test]
    fn ignore_patterns_take_wildcards_at_one_and_any_depth() {
        let r = json!({"result":{"content":[{"text":"a","t":1},{"text":"b","t":1}],"_meta":{"x":1},"deep":{"more":{"_meta":1}}}});
        let l = json!({"result":{"content":[{"text":"A","t":1},{"text":"B","t":2}],"_meta":{"x":2},"deep":{"more":{"_meta":2}}}});
        let ig = Ignore::new(&["/result/content/*/text".into()], true).unwrap();
        let d = diff(&r, &l, &ig, 10);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].pointer, "/result/content/1/t");
        assert!(Ignore::new(&["result/x".into()], false).is_err());
        let esc = Ignore::new(&["/a~1b/c~0d".into()], false).unwrap();
        assert!(diff(&json!({"a/b":{"c~d":1}}), &json!({"a/b":{"c~d":2}}), &esc, 10).is_empty());
    }

    #[test]
    fn an_echoed_session_id_compares_equal_across_sessions() {
        let recorded_id = "49c61057-f2d3-46ae-ab18-2a934a33fb08";
        let hash = mcptape_datasets::redact::RedactionRules::hash(recorded_id);
        let mut r = json!({"text": format!("logging for session {recorded_id} at 5 s"), "n": 1});
        let mut l = json!({"text": "logging for session c2b07fdc-fe07 at 5 s", "n": 1});
        mask_session(&mut r, None, Some(&hash));
        mask_session(&mut l, Some("c2b07fdc-fe07"), None);
        assert_eq!(r, l);
        assert_eq!(r["text"], "logging for session <mcp-session-id> at 5 s");
        let mut other = json!({"text": "logging for session someone-else-entirely"});
        mask_session(&mut other, None, Some(&hash));
        assert_eq!(other["text"], "logging for session someone-else-entirely");
    }

    #[test]
    fn minted_values_and_input_keys_are_carried_into_later_messages() {
        let mut rw = Rewrites::default();
        let rec = json!({"result":{"resultType":"input_required","requestState":"R1",
            "inputRequests":{"rec_key":{"method":"elicitation/create","params":{}}},"task":{"taskId":"t-rec"}}});
        let live = json!({"result":{"resultType":"input_required","requestState":"L1",
            "inputRequests":{"live_key":{"method":"elicitation/create","params":{}}},"task":{"taskId":"t-live"}}});
        rw.learn(&rec, &live);
        let mut retry = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x","requestState":"R1",
            "inputResponses":{"rec_key":{"action":"accept"}}}});
        assert!(rw.apply(&mut retry));
        assert_eq!(retry["params"]["requestState"], "L1");
        assert_eq!(retry["params"]["inputResponses"]["live_key"]["action"], "accept");
        assert!(retry["params"]["inputResponses"].get("rec_key").is_none());
        let mut get = json!({"method":"tasks/get","params":{"taskId":"t-rec"}});
        assert!(rw.apply(&mut get));
        assert_eq!(get["params"]["taskId"], "t-live");
        let mut other = json!({"method":"ping"});
        assert!(!rw.apply(&mut other));
    }
}
