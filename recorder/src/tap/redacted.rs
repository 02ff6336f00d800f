//! What the writer remembers to redact headers cheaply: the rule for each header name it has seen, and the hash of
//! each id it has hashed. The same few names come back on every frame, and the same `Mcp-Session-Id` on every frame
//! of a session; deciding a name's rule again cost more than the rest of a small frame's headers, and a hash is a
//! SHA-256. Both maps are bounded (cleared when full), so hostile names or ids cannot grow the writer's memory.

use foldhash::{HashMap, HashMapExt};
use http::HeaderName;
use mcptape_datasets::redact::{HeaderRule, RedactionRules};

/// Entries each map holds before it starts over.
const MAX_ENTRIES: usize = 1024;

#[derive(Debug)]
pub(crate) struct Redacted {
    rules: HashMap<HeaderName, HeaderRule>,
    hashes: HashMap<String, String>,
}

impl Redacted {
    pub fn new() -> Self {
        Redacted {
            rules: HashMap::new(),
            hashes: HashMap::new(),
        }
    }

    /// The value to store for header `name`: [`RedactionRules::header_value`], remembered.
    pub fn header(&mut self, rules: &RedactionRules, name: &HeaderName, value: &str) -> String {
        let rule = match self.rules.get(name) {
            Some(r) => *r,
            None => {
                if self.rules.len() >= MAX_ENTRIES {
                    self.rules.clear();
                }
                let r = rules.header_rule(name.as_str());
                self.rules.insert(name.clone(), r);
                r
            }
        };
        match rule {
            HeaderRule::Hash => self.hash(value),
            r => r.apply(value).into_owned(),
        }
    }

    /// [`RedactionRules::hash`] of `value`, remembered.
    pub fn hash(&mut self, value: &str) -> String {
        if let Some(h) = self.hashes.get(value) {
            return h.clone();
        }
        if self.hashes.len() >= MAX_ENTRIES {
            self.hashes.clear();
        }
        let h = RedactionRules::hash(value);
        self.hashes.insert(value.to_string(), h.clone());
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_rules_and_hashes_store_what_the_rules_say() {
        let rules = RedactionRules::default();
        let mut r = Redacted::new();
        for _ in 0..2 {
            for (name, value) in [
                ("authorization", "Bearer abc"),
                ("x-custom-token", "abc"),
                ("content-type", "application/json"),
                ("mcp-session-id", "s-1"),
                ("mcp-session-id", "s-2"),
            ] {
                let n = HeaderName::from_static(name);
                assert_eq!(r.header(&rules, &n, value), rules.header_value(name, value), "{name}");
            }
        }
        assert_eq!(r.hash("s-1"), RedactionRules::hash("s-1"));
        let none = RedactionRules::none();
        let mut r = Redacted::new();
        assert_eq!(r.header(&none, &HeaderName::from_static("authorization"), "x"), "x");
    }

    #[test]
    fn the_maps_stay_bounded() {
        let rules = RedactionRules::default();
        let mut r = Redacted::new();
        for i in 0..3 * MAX_ENTRIES {
            let n = HeaderName::from_bytes(format!("x-h{i}").as_bytes()).unwrap();
            r.header(&rules, &n, "v");
            r.hash(&format!("id-{i}"));
        }
        assert!(r.rules.len() <= MAX_ENTRIES && r.hashes.len() <= MAX_ENTRIES);
    }
}
