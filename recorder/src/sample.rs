//! Session sampling (`--sample FRACTION`): keep or drop whole sessions, the same way on every tap.
//!
//! The decision is a pure function of a session key: keep when the first 8 bytes of SHA-256(key), read as a
//! big-endian integer, are below FRACTION × 2^64. Taps that see the same key therefore agree without talking to
//! each other, and raising the fraction only adds sessions (a session kept at 10% is kept at 20%). Which key each
//! transport uses (the server's `Mcp-Session-Id`, a stateless client's identity, the tap's own id for a
//! connection) is described in the README and at each call site.

use sha2::{Digest, Sha256};

/// Keeps a fixed fraction of sessions, chosen by key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampler {
    fraction: f64,
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler { fraction: 1.0 }
    }
}

impl Sampler {
    /// A sampler keeping `fraction` (0 to 1) of sessions.
    pub fn new(fraction: f64) -> Result<Self, String> {
        if !(0.0..=1.0).contains(&fraction) {
            return Err(format!(
                "--sample {fraction}: expected a fraction from 0 to 1 (0.1 keeps 10% of sessions)"
            ));
        }
        Ok(Sampler { fraction })
    }

    /// The fraction kept.
    pub fn fraction(&self) -> f64 {
        self.fraction
    }

    /// Is the session with this key recorded?
    pub fn keeps(&self, key: &[u8]) -> bool {
        if self.fraction >= 1.0 {
            return true;
        }
        let digest = Sha256::digest(key);
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        let x = u64::from_be_bytes(first) as f64 / 18_446_744_073_709_551_616.0;
        x < self.fraction
    }
}

/// Parses `--sample`.
pub fn parse(s: &str) -> Result<f64, String> {
    let f: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}`: expected a fraction from 0 to 1, such as 0.1"))?;
    Sampler::new(f).map(|s| s.fraction())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_are_stable_monotonic_and_near_the_fraction() {
        let s10 = Sampler::new(0.1).unwrap();
        let s20 = Sampler::new(0.2).unwrap();
        let keys: Vec<String> = (0..10_000).map(|i| format!("session-{i}")).collect();
        let kept10 = keys.iter().filter(|k| s10.keeps(k.as_bytes())).count();
        // Binomial(10000, 0.1): sd 30; the keys are fixed, so this is a fixed number, checked loosely.
        assert!((850..=1150).contains(&kept10), "{kept10}");
        for k in &keys {
            assert_eq!(s10.keeps(k.as_bytes()), Sampler::new(0.1).unwrap().keeps(k.as_bytes()));
            if s10.keeps(k.as_bytes()) {
                assert!(s20.keeps(k.as_bytes()), "raising the fraction only adds sessions");
            }
        }
        assert!(keys.iter().all(|k| Sampler::default().keeps(k.as_bytes())));
        assert!(!keys.iter().any(|k| Sampler::new(0.0).unwrap().keeps(k.as_bytes())));
        assert!(parse("1.5").is_err() && parse("x").is_err() && parse("-0.1").is_err());
        assert_eq!(parse("0.25"), Ok(0.25));
    }
}
