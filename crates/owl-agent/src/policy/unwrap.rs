//! Wrappers peeled off a simple command (`env`, `sudo`, `nice`, `timeout`, `xargs`, `sh -c`,
//! `eval`, `find -exec`…) down to the program that really runs.

use super::parse::parse;
use super::Word;

const MAX_DEPTH: u32 = 16;

/// Peels wrappers off one simple command and adds what really runs (and anything nested).
pub(super) fn unwrap_into(mut argv: Vec<Word>, out: &mut Vec<Vec<Word>>, depth: u32) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err("the command nests too deeply to check".into());
    }
    // Leading assignments (FOO=bar cmd) and the grouping words of `{ ...; }`, `!` and `time`
    // are not programs. Drained at once: removing one by one is quadratic on a long line.
    let lead = argv.iter().take_while(|w| is_assignment(&w.text)).count();
    argv.drain(..lead);
    let lead = argv.iter().take_while(|w| matches!(w.text.as_str(), "{" | "}" | "!" | "time")).count();
    argv.drain(..lead);
    let Some(first) = argv.first() else { return Ok(()) };
    if first.dynamic {
        out.push(argv);
        return Ok(());
    }
    let prog = first.text.rsplit('/').next().unwrap_or(&first.text).to_string();
    let rest = |skip: usize| argv[skip.min(argv.len())..].to_vec();
    // Skips options of a wrapper; `with_value` are options that take the next word.
    let after_options = |start: usize, with_value: &[&str]| -> usize {
        let mut i = start;
        while i < argv.len() {
            let t = &argv[i].text;
            if t == "--" {
                return i + 1;
            }
            if !t.starts_with('-') || t == "-" {
                break;
            }
            i += if with_value.contains(&t.as_str()) { 2 } else { 1 };
        }
        i
    };
    match prog.as_str() {
        "env" => {
            let mut i = after_options(1, &["-u", "--unset", "-C", "--chdir", "-S", "--split-string"]);
            if let Some(pos) = argv.iter().position(|w| w.text == "-S" || w.text == "--split-string") {
                // env -S "cmd args" runs a split string: check it as a script.
                if let Some(s) = argv.get(pos + 1) {
                    for c in parse(&s.text)? {
                        unwrap_into(c, out, depth + 1)?;
                    }
                }
            }
            while i < argv.len() && is_assignment(&argv[i].text) {
                i += 1;
            }
            unwrap_into(rest(i), out, depth + 1)
        }
        "sudo" | "doas" => unwrap_into(rest(after_options(1, &["-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U"])), out, depth + 1),
        "nice" => unwrap_into(rest(after_options(1, &["-n", "--adjustment"])), out, depth + 1),
        "ionice" => unwrap_into(rest(after_options(1, &["-c", "-n", "-p", "-P", "-u"])), out, depth + 1),
        "nohup" | "command" | "builtin" | "exec" | "setsid" | "stdbuf" | "unbuffer" | "chronic" => {
            unwrap_into(rest(after_options(1, &["-o", "-e", "-i", "-a"])), out, depth + 1)
        }
        "timeout" => {
            let i = after_options(1, &["-s", "--signal", "-k", "--kill-after"]);
            unwrap_into(rest(i + 1), out, depth + 1) // the duration
        }
        "xargs" => unwrap_into(
            rest(after_options(1, &["-a", "-d", "-E", "-I", "-L", "-n", "-P", "-s", "--delimiter", "--max-args", "--max-procs"])),
            out,
            depth + 1,
        ),
        "busybox" => unwrap_into(rest(1), out, depth + 1),
        "sh" | "bash" | "dash" | "zsh" | "ksh" | "ash" | "mksh" | "fish" => {
            // `sh -c SCRIPT`: the script is what runs. Options may be bundled: -ec, -lc.
            let c_at = argv.iter().skip(1).position(|w| w.text.starts_with('-') && !w.text.starts_with("--") && w.text.contains('c'));
            match c_at {
                Some(p) => {
                    let script = argv.get(p + 2).ok_or_else(|| format!("`{prog} -c` without a script"))?;
                    if script.dynamic {
                        out.push(vec![Word { text: prog.clone(), dynamic: false }, Word { text: "-c".into(), dynamic: true }]);
                        out.push(vec![Word { text: script.text.clone(), dynamic: true }]);
                        return Ok(());
                    }
                    out.push(argv[..p + 2].to_vec());
                    for c in parse(&script.text)? {
                        unwrap_into(c, out, depth + 1)?;
                    }
                    Ok(())
                }
                None => {
                    out.push(argv);
                    Ok(())
                }
            }
        }
        "eval" => {
            let script = argv[1..].iter().map(|w| w.text.as_str()).collect::<Vec<_>>().join(" ");
            if argv[1..].iter().any(|w| w.dynamic) {
                out.push(vec![Word { text: "eval".into(), dynamic: true }]);
                return Ok(());
            }
            out.push(vec![argv[0].clone()]);
            for c in parse(&script)? {
                unwrap_into(c, out, depth + 1)?;
            }
            Ok(())
        }
        "find" => {
            // find ... -exec CMD ... ; runs CMD for each file.
            let mut i = 1;
            let mut own = vec![argv[0].clone()];
            while i < argv.len() {
                let t = argv[i].text.as_str();
                if matches!(t, "-exec" | "-execdir" | "-ok" | "-okdir") {
                    let end = argv[i + 1..].iter().position(|w| w.text == ";" || w.text == "+").map(|p| i + 1 + p).unwrap_or(argv.len());
                    own.push(argv[i].clone());
                    unwrap_into(argv[i + 1..end].to_vec(), out, depth + 1)?;
                    i = end + 1;
                } else {
                    own.push(argv[i].clone());
                    i += 1;
                }
            }
            out.push(own);
            Ok(())
        }
        _ => {
            out.push(argv);
            Ok(())
        }
    }
}

pub(super) fn is_assignment(t: &str) -> bool {
    match t.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit())
        }
        None => false,
    }
}
