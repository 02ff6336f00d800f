//! The command frame: every command exists; the ones not built yet say so in one line and exit 2.

use crate::util::*;

#[test]
fn commands_not_built_yet_say_so_and_exit_2() {
    for cmd in ["demo"] {
        let o = run(&[cmd, "--some-flag", "x"]);
        assert_one_line_error(&o, 2, &[cmd, "not built yet"]);
        assert!(o.stdout.is_empty());
    }
}

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
