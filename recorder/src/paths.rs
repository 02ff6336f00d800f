//! Where captures go when `--out` is not given, and how they are named.
//!
//! MCP clients start servers from odd working directories (often `/` or the app bundle), so a relative default
//! would scatter captures: the default is a per-user data directory.

use std::path::PathBuf;

/// `$XDG_DATA_HOME/mcptape/captures`, else `~/.local/share/mcptape/captures`
/// (`~/Library/Application Support/mcptape/captures` on macOS).
pub fn default_capture_dir() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
    if cfg!(target_os = "macos") {
        return home.map(|h| h.join("Library/Application Support/mcptape/captures"));
    }
    std::env::var_os("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| home.map(|h| h.join(".local/share")))
        .map(|d| d.join("mcptape/captures"))
}

const LAUNCHERS: [&str; 10] = [
    "npx", "uvx", "node", "python", "python3", "bunx", "deno", "pipx", "uv", "docker",
];

/// A file-name label for a server command: the package or script name behind a launcher
/// (`npx -y @modelcontextprotocol/server-everything` → `server-everything`), else the program's name.
pub fn label_for(command: &[String]) -> String {
    let base = |s: &str| s.rsplit('/').next().unwrap_or(s).to_string();
    let prog = command.first().map(|p| base(p)).unwrap_or_default();
    let pick = if LAUNCHERS.contains(&prog.as_str()) {
        command
            .iter()
            .skip(1)
            .find(|a| !a.starts_with('-') && !matches!(a.as_str(), "run" | "exec" | "tool"))
            .map(|a| base(a.split('@').find(|p| !p.is_empty()).unwrap_or(a)))
            .unwrap_or(prog)
    } else {
        prog
    };
    sanitize(&pick)
}

/// Keeps `[A-Za-z0-9._-]`, replacing anything else with `_`; never empty.
pub fn sanitize(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let out = out.trim_start_matches('.').to_string();
    if out.is_empty() { "capture".into() } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn labels_name_the_server_not_the_launcher() {
        assert_eq!(
            label_for(&v(&["npx", "-y", "@modelcontextprotocol/server-everything"])),
            "server-everything"
        );
        assert_eq!(
            label_for(&v(&["npx", "-y", "@modelcontextprotocol/server-everything@2025.1.1"])),
            "server-everything"
        );
        assert_eq!(label_for(&v(&["uvx", "mcp-server-time"])), "mcp-server-time");
        assert_eq!(label_for(&v(&["python3", "-m", "mcp_server_time"])), "mcp_server_time");
        assert_eq!(label_for(&v(&["/usr/local/bin/my server"])), "my_server");
        assert_eq!(label_for(&v(&["..."])), "capture");
    }
}
