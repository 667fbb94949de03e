//! The policy against smuggling, nesting and hostile input.

use super::*;
use proptest::prelude::*;

fn policy(default: PolicyDefault) -> Policy {
    Policy::new(
        &["ls".into(), "cat".into(), "echo".into(), "git status".into(), "grep".into(), "true".into()],
        &["rm".into(), "git push".into(), "curl".into()],
        default,
    )
    .unwrap()
}

fn denied(v: Verdict) -> bool {
    matches!(v, Verdict::Deny(_))
}

#[test]
fn plain_allowed_commands_pass() {
    let p = policy(PolicyDefault::Deny);
    for c in ["ls -la", "git status -s", "cat a.txt | grep x > out.txt", "echo 'a; rm -rf /'", "ls && echo done", "/bin/ls"] {
        assert_eq!(p.check(c), Verdict::Allow, "{c}");
    }
}

#[test]
fn denied_commands_cannot_be_smuggled() {
    let p = policy(PolicyDefault::Allow);
    for c in [
        "rm -rf /",
        "/bin/rm x",
        "ls; rm x",
        "ls && rm x",
        "ls || rm x",
        "ls | rm x",
        "ls & rm x",
        "ls\nrm x",
        "echo $(rm x)",
        "echo \"$(rm x)\"",
        "echo `rm x`",
        "cat <(rm x)",
        "(rm x)",
        "{ rm x; }",
        "env rm x",
        "env -i FOO=1 rm x",
        "FOO=1 rm x",
        "sudo -u root rm x",
        "nice -n 5 rm x",
        "timeout 5 rm x",
        "nohup rm x",
        "xargs rm",
        "bash -c 'rm x'",
        "sh -ec \"ls; rm x\"",
        "env bash -c 'env sh -c \"rm x\"'",
        "eval rm x",
        "find . -exec rm {} ;",
        "git push origin main",
        "command rm x",
        "exec rm x",
        "r\\m x",
        "'rm' x",
        "\"r\"m x",
        "busybox rm x",
        "ls > /dev/null; curl http://x",
    ] {
        assert!(denied(p.check(c)), "`{c}` got through: {:?}", p.check(c));
    }
}

#[test]
fn programs_computed_at_run_time_are_never_allowed_by_a_rule() {
    let p = policy(PolicyDefault::Allow);
    assert!(matches!(p.check("$CMD x"), Verdict::Ask(_)));
    assert!(matches!(p.check("$(echo rm) x"), Verdict::Ask(_)));
    assert!(matches!(p.check("bash -c \"$SCRIPT\""), Verdict::Ask(_)));
    assert!(denied(policy(PolicyDefault::Deny).check("${X} y")));
}

#[test]
fn unmatched_commands_follow_the_default() {
    assert_eq!(policy(PolicyDefault::Allow).check("make test"), Verdict::Allow);
    assert!(denied(policy(PolicyDefault::Deny).check("make test")));
    assert!(matches!(policy(PolicyDefault::Ask).check("ls; make test"), Verdict::Ask(_)));
    // A deny elsewhere in the line wins over an ask.
    assert!(denied(policy(PolicyDefault::Ask).check("make test; rm x")));
}

#[test]
fn unparseable_commands_are_denied() {
    let p = policy(PolicyDefault::Allow);
    for c in ["echo 'oops", "echo \"oops", "echo $(ls", "ls )", "echo `x"] {
        assert!(denied(p.check(c)), "{c}");
    }
}

#[test]
fn redirection_targets_are_not_arguments_and_fd_numbers_are_dropped() {
    let p = Policy::new(&["echo hi".into()], &[], PolicyDefault::Deny).unwrap();
    assert_eq!(p.check("echo hi 2>/dev/null >out.txt"), Verdict::Allow);
    assert_eq!(p.check("echo hi &>log"), Verdict::Allow);
}

#[test]
fn bad_rules_are_reported() {
    assert!(Policy::new(&["ls; rm".into()], &[], PolicyDefault::Ask).unwrap_err().contains("shell_allow"));
}

#[test]
fn deep_nesting_is_denied_not_a_stack_overflow() {
    let p = policy(PolicyDefault::Allow);
    for (open, close) in [("(", ")"), ("$(", ")"), ("<(", ")"), ("$(echo $(", "))")] {
        let deep = format!("{}true{}", open.repeat(5_000), close.repeat(5_000));
        match p.check(&deep) {
            Verdict::Deny(why) => assert!(why.contains("levels deep"), "{open}: {why}"),
            v => panic!("{open}: {v:?}"),
        }
    }
    // Backticks nest through escapes: each level is parsed again.
    let mut cmd = "true".to_string();
    for _ in 0..200 {
        cmd = format!("echo `{}`", cmd.replace('\\', "\\\\").replace('`', "\\`"));
        if cmd.len() > 60_000 {
            break;
        }
    }
    assert!(denied(p.check(&cmd)), "deep backticks");
    // `sh -c` inside `sh -c` is bounded by the wrapper depth.
    let mut cmd = "rm -rf x".to_string();
    for _ in 0..100 {
        cmd = format!("sh -c '{}'", cmd.replace('\'', "'\\''"));
        if cmd.len() > 60_000 {
            break;
        }
    }
    assert!(denied(p.check(&cmd)));
    assert!(denied(p.check(&"a".repeat(MAX_COMMAND_LEN + 1))));
    // Ordinary nesting is still read through.
    assert!(denied(p.check("echo $( (cat $(rm x)) )")));
    assert_eq!(p.check("echo $( (cat $(ls)) )"), Verdict::Allow);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    /// Whatever a model writes, the policy answers; it never panics.
    #[test]
    fn any_command_line_gets_a_verdict(src in prop_oneof![
        any::<String>(),
        "[()$`'\"\\;&|<>{}!#= a-z\n\x00]{0,400}",
        (1usize..3000).prop_map(|n| format!("{}ls", "sudo env nice ".repeat(n))),
        (1usize..3000).prop_map(|n| format!("{}ls", "A=1 ".repeat(n))),
    ]) {
        for default in [PolicyDefault::Allow, PolicyDefault::Ask, PolicyDefault::Deny] {
            let _ = policy(default).check(&src);
        }
        let _ = Policy::new(std::slice::from_ref(&src), &[], PolicyDefault::Deny);
    }
}

#[test]
fn sandboxed_runs_what_the_sandbox_confines_and_asks_for_more() {
    let p = Policy::new(&[], &["rm -rf".into()], PolicyDefault::Sandboxed).unwrap();
    let in_sandbox = p.clone().for_calls(Some(false));
    for c in ["ls -la", "cat notes.txt | wc -l", "echo owl > hello.txt", "python3 -c 'print(1)'", "mv a.txt b.txt", "git status"] {
        assert_eq!(in_sandbox.check(c), Verdict::Allow, "{c}");
    }
    for c in ["curl https://example.com", "ls && wget x", "pip install requests", "git push origin main", "npx something", "$CMD x"] {
        assert!(matches!(in_sandbox.check(c), Verdict::Ask(_)), "{c}: {:?}", in_sandbox.check(c));
    }
    assert!(denied(in_sandbox.check("rm -rf /")), "deny rules still deny");
    // With the network, network programs run; installing still asks.
    let with_net = p.clone().for_calls(Some(true));
    assert_eq!(with_net.check("curl https://example.com"), Verdict::Allow);
    assert!(matches!(with_net.check("pip install x"), Verdict::Ask(_)));
    // Without a sandbox, `sandboxed` is `ask`.
    let bare = p.for_calls(None);
    assert!(matches!(bare.check("ls"), Verdict::Ask(_)));
}
