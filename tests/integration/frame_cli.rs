//! The command frame: every command exists; usage errors exit 2.

use crate::util::*;

#[test]
fn usage_errors_exit_2_and_help_lists_every_command() {
    let o = run(&["dataset", "inspect"]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&["report", "--some-flag", "x"]);
    assert_eq!(o.status.code(), Some(2));
    let help = stdout(&run(&["--help"]));
    for cmd in ["record", "replay", "serve", "load", "report", "dataset", "demo"] {
        assert!(help.contains(cmd), "{help}");
    }
}
