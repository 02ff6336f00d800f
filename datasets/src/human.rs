//! Human-readable numbers for terminal output.

/// `1.23ms`, `456µs`, `2.10s`, `1h02m`.
pub fn duration_ns(ns: u64) -> String {
    let ns = ns as f64;
    if ns < 1e3 {
        format!("{ns:.0}ns")
    } else if ns < 1e6 {
        format!("{:.0}µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2}ms", ns / 1e6)
    } else if ns < 60e9 {
        format!("{:.2}s", ns / 1e9)
    } else {
        let s = (ns / 1e9) as u64;
        format!("{}h{:02}m{:02}s", s / 3600, (s / 60) % 60, s % 60)
    }
}

/// `512 B`, `1.5 KiB`, `3.2 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// RFC 3339 UTC with nanoseconds, or the raw number for times before 1970.
pub fn timestamp_ns(ns: i64) -> String {
    match u64::try_from(ns) {
        Ok(ns) => {
            humantime::format_rfc3339_nanos(std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns)).to_string()
        }
        Err(_) => ns.to_string(),
    }
}

/// The wall clock in ns since the epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Parses RFC 3339 (`2026-11-22T07:55:17.5Z`) into ns since the epoch.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(s).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_nanos()).ok()
}

/// Shortens text to `max` characters, marking the cut with `…`.
pub fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_read_naturally() {
        assert_eq!(duration_ns(999), "999ns");
        assert_eq!(duration_ns(1_500), "2µs");
        assert_eq!(duration_ns(1_234_567), "1.23ms");
        assert_eq!(duration_ns(2_100_000_000), "2.10s");
        assert_eq!(duration_ns(3_723_000_000_000), "1h02m03s");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(shorten("abcdef", 4), "abc…");
        let t = parse_timestamp("2026-11-22T07:55:17.000000123Z").unwrap();
        assert_eq!(timestamp_ns(t), "2026-11-22T07:55:17.000000123Z");
    }
}

/// Parses a byte size: `1048576`, `512KiB`, `64MiB`, `1GiB`, `10MB` (KB/MB/GB/TB are powers of 1000; K/M/G/T and
/// KiB/MiB/GiB/TiB powers of 1024; case-insensitive, spaces allowed before the unit).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("`{s}`: expected a size such as 1048576, 512KiB, 64MiB or 1GiB");
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(|| format!("`{s}`: too large"))
}

#[cfg(test)]
mod parse_tests {
    use super::parse_bytes;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_bytes("1048576"), Ok(1 << 20));
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("64 mib"), Ok(64 << 20));
        assert_eq!(parse_bytes("2G"), Ok(2 << 30));
        assert_eq!(parse_bytes("10MB"), Ok(10_000_000));
        assert!(parse_bytes("ten").is_err());
        assert!(parse_bytes("5XB").is_err());
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes("99999999999TiB").is_err());
    }
}
