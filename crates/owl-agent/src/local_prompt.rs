//! The prompt a small local model gets: plain text, not chat turns. A model of a few hundred
//! million parameters follows a pattern far better than an instruction, so the prompt is a
//! short list of the tools, then a few worked examples (a task, its tool calls with their
//! results, the answer), then the task at hand written the same way. The examples are chosen
//! for each task from a bank of common first tasks (create, append, read and answer, list,
//! rename, copy, delete, run, edit, count, search, remember, recall, refuse), by the words they
//! share with it; the likeliest example's tool is what the model's first call may use.
//!
//! Chat-tuned hosted models never see this: it is only for the `local` provider.

use crate::msg::{ChatRequest, Message, ToolSpec};
use std::collections::BTreeSet;

/// One worked example: the task, its calls (tool, JSON arguments, result), the answer.
pub struct Example {
    pub task: &'static str,
    pub steps: &'static [(&'static str, &'static str, &'static str)],
    pub answer: &'static str,
}

const DONE: &str = "exit code 0";

/// Common first tasks, each shown the way the tools answer them. File names and contents differ
/// from one another so that the model takes the names from its own task, not from an example.
pub const EXAMPLES: &[Example] = &[
    Example {
        task: "Create a file named todo.md containing the text buy bread",
        steps: &[("write_file", r#"{"path": "todo.md", "content": "buy bread"}"#, "wrote 9 bytes to todo.md")],
        answer: "Created todo.md containing buy bread.",
    },
    Example {
        task: "Make a file named status.log containing the word ready",
        steps: &[("write_file", r#"{"path": "status.log", "content": "ready"}"#, "wrote 5 bytes to status.log")],
        answer: "Created status.log containing ready.",
    },
    Example {
        task: "Make a file notes/ideas.txt that says plant trees",
        steps: &[("write_file", r#"{"path": "notes/ideas.txt", "content": "plant trees"}"#, "wrote 11 bytes to notes/ideas.txt")],
        answer: "Created notes/ideas.txt.",
    },
    Example {
        task: "Create a file city.json containing a JSON object whose city is Paris",
        steps: &[("write_file", r#"{"path": "city.json", "content": "{\"city\": \"Paris\"}"}"#, "wrote 18 bytes to city.json")],
        answer: "Created city.json with the city Paris.",
    },
    Example {
        task: "Append the line call mom to the end of tasks.txt",
        steps: &[("shell", r#"{"command": "echo 'call mom' >> tasks.txt"}"#, DONE)],
        answer: "Added the line call mom to tasks.txt.",
    },
    Example {
        task: "Add the word pears as a new line at the end of fruit.txt",
        steps: &[("shell", r#"{"command": "echo 'pears' >> fruit.txt"}"#, DONE)],
        answer: "Added pears to fruit.txt.",
    },
    Example {
        task: "Read report.txt. How much is the budget?",
        steps: &[("read_file", r#"{"path": "report.txt"}"#, "The budget for the trip is 400 euros.")],
        answer: "The budget is 400 euros.",
    },
    Example {
        task: "What does readme.md say the project is called?",
        steps: &[("read_file", r#"{"path": "readme.md"}"#, "# Finch\nFinch sorts photos by date.")],
        answer: "The project is called Finch.",
    },
    Example {
        task: "Show me which files are in this folder",
        steps: &[("list_dir", "{}", "photo.png\t20 bytes\nplan.md\t12 bytes")],
        answer: "The folder holds photo.png and plan.md.",
    },
    Example {
        task: "List what is in the current directory",
        steps: &[("list_dir", "{}", "src/\tdirectory\nREADME.md\t80 bytes")],
        answer: "The directory holds src/ and README.md.",
    },
    Example {
        task: "Rename old.log to archive.log",
        steps: &[("shell", r#"{"command": "mv old.log archive.log"}"#, DONE)],
        answer: "Renamed old.log to archive.log.",
    },
    Example {
        task: "Rename the file photo.jpeg to beach.jpeg",
        steps: &[("shell", r#"{"command": "mv photo.jpeg beach.jpeg"}"#, DONE)],
        answer: "Renamed photo.jpeg to beach.jpeg.",
    },
    Example {
        task: "Make a copy of plan.md called backup.md",
        steps: &[("shell", r#"{"command": "cp plan.md backup.md"}"#, DONE)],
        answer: "Copied plan.md to backup.md.",
    },
    Example {
        task: "Copy report.txt to report2.txt",
        steps: &[("shell", r#"{"command": "cp report.txt report2.txt"}"#, DONE)],
        answer: "Copied report.txt to report2.txt.",
    },
    Example {
        task: "Copy main.py to main_backup.py",
        steps: &[("shell", r#"{"command": "cp main.py main_backup.py"}"#, DONE)],
        answer: "Copied main.py to main_backup.py.",
    },
    Example {
        task: "Delete the file notes.bak",
        steps: &[("shell", r#"{"command": "rm notes.bak"}"#, DONE)],
        answer: "Deleted notes.bak.",
    },
    Example {
        task: "Remove the file cache.tmp",
        steps: &[("shell", r#"{"command": "rm cache.tmp"}"#, DONE)],
        answer: "Deleted cache.tmp.",
    },
    Example {
        task: "Run `date +%Y` and tell me what it prints",
        steps: &[("shell", r#"{"command": "date +%Y"}"#, "exit code 0\n2026")],
        answer: "It prints 2026.",
    },
    Example {
        task: "How many lines does list.csv have?",
        steps: &[("shell", r#"{"command": "wc -l list.csv"}"#, "exit code 0\n12 list.csv")],
        answer: "list.csv has 12 lines.",
    },
    Example {
        task: "In app.toml, replace port=80 with port=8080",
        steps: &[("edit_file", r#"{"path": "app.toml", "old": "port=80", "new": "port=8080"}"#, "replaced 1 occurrence in app.toml")],
        answer: "Changed port=80 to port=8080 in app.toml.",
    },
    Example {
        task: "In server.cfg, change mode=dev to mode=prod",
        steps: &[("edit_file", r#"{"path": "server.cfg", "old": "mode=dev", "new": "mode=prod"}"#, "replaced 1 occurrence in server.cfg")],
        answer: "server.cfg now has mode=prod.",
    },
    Example {
        task: "Change the title in index.html from Hello to Welcome",
        steps: &[("edit_file", r#"{"path": "index.html", "old": "Hello", "new": "Welcome"}"#, "replaced 1 occurrence in index.html")],
        answer: "The title in index.html is now Welcome.",
    },
    Example {
        task: "Count the words of essay.txt and write the number to words.txt",
        steps: &[("shell", r#"{"command": "wc -w < essay.txt > words.txt"}"#, DONE)],
        answer: "Wrote the word count of essay.txt to words.txt.",
    },
    Example {
        task: "Count the lines of names.txt and save the count in total.txt",
        steps: &[("shell", r#"{"command": "wc -l < names.txt > total.txt"}"#, DONE)],
        answer: "Wrote the line count of names.txt to total.txt.",
    },
    Example {
        task: "Which file mentions the word apples?",
        steps: &[("grep", r#"{"pattern": "apples"}"#, "fruit.md:2: I like apples")],
        answer: "fruit.md mentions apples.",
    },
    Example {
        task: "Remember for later: my cat is called Tom",
        steps: &[("memory_add", r#"{"text": "my cat is called Tom"}"#, "remembered")],
        answer: "I will remember that your cat is called Tom.",
    },
    Example {
        task: "Look in your memory for my cat's name and write it to cat.txt",
        steps: &[
            ("memory_search", r#"{"query": "cat name"}"#, "my cat is called Tom"),
            ("write_file", r#"{"path": "cat.txt", "content": "Tom"}"#, "wrote 3 bytes to cat.txt"),
        ],
        answer: "Your cat is called Tom; I wrote it to cat.txt.",
    },
    Example {
        // Few words shared with other tasks, so its path is not shown (and copied) elsewhere.
        task: "Save hi in /etc/motd",
        steps: &[(
            "write_file",
            r#"{"path": "/etc/motd", "content": "hi"}"#,
            "Error: `/etc/motd` is absolute; give a path relative to the workspace",
        )],
        answer: "I cannot write outside my workspace, so /etc/motd was not changed.",
    },
];

/// Short descriptions for the tools the examples use; others keep their first sentence.
fn short(t: &ToolSpec) -> String {
    let d = match t.name.as_str() {
        "write_file" => "create a file with this content",
        "read_file" => "read a file",
        "list_dir" => "list the files",
        "shell" => "run a shell command: mv renames, cp copies, rm deletes, wc counts, echo >> appends",
        "grep" => "find the files that contain a word",
        "edit_file" => "replace text in a file",
        "memory_add" => "remember a fact for later",
        "memory_search" => "look up a remembered fact",
        _ => t.description.split(". ").next().unwrap_or_default().trim_end_matches('.'),
    };
    let args: Vec<&str> = t.parameters["required"].as_array().map(|a| a.iter().filter_map(|v| v.as_str()).collect()).unwrap_or_default();
    format!("- {}({}): {d}", t.name, args.join(", "))
}

/// Lowercase words with a plural or verb `s` taken off, so "lines" meets "line". File names and
/// paths are left out: they are what a call works on, not what the task asks for.
fn words(s: &str) -> BTreeSet<String> {
    const STOP: &[&str] =
        &["the", "a", "an", "to", "of", "in", "and", "it", "is", "me", "my", "i", "you", "your", "this", "that", "with", "for", "on"];
    s.split_whitespace()
        .filter(|w| !w.trim_end_matches(['.', ',', '?', '!', ':']).contains(['.', '/']))
        .flat_map(|w| w.split(|c: char| !c.is_alphanumeric()))
        .filter(|w| !w.is_empty())
        .map(|w| {
            let w = w.to_lowercase();
            match w.strip_suffix('s') {
                Some(stem) if stem.len() >= 3 && !stem.ends_with('s') => stem.to_string(),
                _ => w,
            }
        })
        .filter(|w| !STOP.contains(&w.as_str()))
        .collect()
}

/// The examples that use only `tools` and share a word with `task`, best match first (rarer
/// words weigh more); when none shares one, the first few of the bank.
pub fn select<'a>(task: &str, tools: &[ToolSpec]) -> Vec<&'a Example> {
    let have: BTreeSet<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    let usable: Vec<&Example> = EXAMPLES.iter().filter(|e| e.steps.iter().all(|(t, _, _)| have.contains(t))).collect();
    let bags: Vec<BTreeSet<String>> = usable.iter().map(|e| words(e.task)).collect();
    let idf = |w: &str| {
        let n = bags.iter().filter(|b| b.contains(w)).count();
        ((usable.len() as f64 + 1.0) / (n as f64 + 1.0)).ln() + 0.1
    };
    let mine = words(task);
    let mut scored: Vec<(f64, usize)> =
        bags.iter().enumerate().map(|(i, b)| (b.intersection(&mine).map(|w| idf(w)).sum::<f64>(), i)).collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    if scored.first().is_some_and(|(s, _)| *s > 0.0) {
        scored.retain(|(s, _)| *s > 0.0);
    }
    scored.into_iter().map(|(_, i)| usable[i]).collect()
}

/// How the daemon marks a recalled memory in a prompt (owl-memory's `RECALL_MARKER`; an engine
/// test checks they agree): `[recalled memory #ID] (KIND) TEXT`.
pub const RECALL_MARKER: &str = "[recalled memory #";

/// Splits a task's text into what was recalled for it (facts, preferences and conversations;
/// summaries of earlier tasks are left out, noise for a small model) and the task itself.
fn split_recalled(text: &str) -> (Vec<String>, String) {
    let mut facts = Vec::new();
    let mut rest = Vec::new();
    for line in text.lines() {
        match line.find(RECALL_MARKER) {
            Some(at) => {
                let after = &line[at + RECALL_MARKER.len()..];
                let after = after.split_once("] ").map(|(_, r)| r).unwrap_or(after);
                let (kind, body) = match after.strip_prefix('(').and_then(|r| r.split_once(") ")) {
                    Some((k, b)) => (k, b),
                    None => ("", after),
                };
                if kind != "task" && !body.trim().is_empty() {
                    facts.push(body.trim().to_string());
                }
            }
            None if line.starts_with("Memories that may be relevant") => {}
            None => rest.push(line),
        }
    }
    (facts, rest.join("\n").trim().to_string())
}

/// How many examples the prompt shows.
const SHOWN: usize = 4;
/// A tool result longer than this is cut in the prompt (the model's context is small).
const RESULT_MAX: usize = 1500;

fn clip(s: &str) -> String {
    let s = s.trim();
    if s.len() <= RESULT_MAX {
        return s.to_string();
    }
    let mut end = RESULT_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} [...]", &s[..end])
}

/// A compact tool result: a shell call's exit line and output without the section markers,
/// and memory matches as their texts (summaries of earlier tasks left out, as in recall).
fn result_text(content: &str, is_error: bool) -> String {
    let mut c = content.replace("--- stdout ---\n", "").replace("--- stderr ---\n", "");
    if c.contains(RECALL_MARKER) {
        let (facts, rest) = split_recalled(&c);
        c = if facts.is_empty() { "no matching memory".to_string() } else { facts.join("\n") };
        if !rest.is_empty() {
            c = format!("{rest}\n{c}");
        }
    }
    let c = clip(&c);
    if is_error {
        format!("Error: {c}")
    } else {
        c
    }
}

/// A call as the examples write it: `tool` first, then the required arguments in the order the
/// grammar asks for them (a JSON map would sort them), then any others.
fn call_line(tools: &[ToolSpec], name: &str, args: &serde_json::Value) -> String {
    let mut keys: Vec<String> = tools
        .iter()
        .find(|t| t.name == name)
        .and_then(|t| t.parameters["required"].as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default();
    let obj = args.as_object().cloned().unwrap_or_default();
    keys.retain(|k| obj.contains_key(k));
    keys.extend(obj.keys().filter(|k| !keys.contains(k)).cloned().collect::<Vec<_>>());
    let fields: Vec<String> = keys.iter().map(|k| format!("{}: {}", serde_json::Value::from(k.as_str()), obj[k.as_str()])).collect();
    format!("{{\"tool\": {}, \"arguments\": {{{}}}}}", serde_json::Value::from(name), fields.join(", "))
}

fn answer_line(text: &str) -> String {
    format!("{{\"answer\": {}}}\n", serde_json::Value::from(text))
}

fn example_text(e: &Example) -> String {
    let mut s = format!("Task: {}\n", e.task);
    for (tool, args, result) in e.steps {
        s.push_str(&format!("{{\"tool\": \"{tool}\", \"arguments\": {args}}}\nResult: {result}\n"));
    }
    s.push_str(&answer_line(e.answer));
    s
}

/// The whole prompt for `req`, ending where the model writes its next JSON line. `base` is the
/// generic system prompt, left out here (the examples say the same); what an agent's own
/// `system_prompt` adds is kept. Returns the prompt and the one tool the next reply must call,
/// if any: the closest example is the plan, so while the task has made fewer calls than that
/// example, the next call is the example's next one (the first only when the agent must use a
/// tool; never right after a failed call, which the model may retry its own way).
pub fn render(req: &ChatRequest, base: &str) -> (String, Option<String>) {
    let mut system = String::new();
    let mut task = String::new();
    for m in &req.messages {
        match m {
            Message::System { content } => system.push_str(content.strip_prefix(base).unwrap_or(content).trim()),
            Message::User { content } if task.is_empty() => task = split_recalled(content).1,
            _ => {}
        }
    }
    let mut out = String::from(
        "An agent does tasks in a folder of files. For each task it writes tool calls as JSON, one per line, \
         reads each result, and ends with its answer.\n",
    );
    if !system.is_empty() {
        out.push_str(&format!("{system}\n"));
    }
    let chosen = select(&task, &req.tools);
    if !req.tools.is_empty() {
        out.push_str("\nTools:\n");
        for t in &req.tools {
            out.push_str(&short(t));
            out.push('\n');
        }
        out.push('\n');
        // Best match last: nearest to the task, the pattern the model follows most.
        for e in chosen.iter().take(SHOWN).rev() {
            out.push_str(&example_text(e));
        }
    }
    let mut first_user = true;
    for m in &req.messages {
        match m {
            Message::System { .. } => {}
            Message::User { content } if first_user => {
                first_user = false;
                let (facts, task) = split_recalled(content);
                for f in facts {
                    out.push_str(&format!("Memory: {f}\n"));
                }
                out.push_str(&format!("Task: {task}\n"));
            }
            Message::User { content } => out.push_str(&format!("Note: {}\n", content.trim())),
            Message::Assistant { content, tool_calls } => match tool_calls.first() {
                Some(c) => out.push_str(&format!("{}\n", call_line(&req.tools, &c.name, &c.arguments))),
                None => out.push_str(&answer_line(content)),
            },
            Message::Tool { content, is_error, .. } => out.push_str(&format!("Result: {}\n", result_text(content, *is_error))),
        }
    }
    let calls = req.messages.iter().filter(|m| matches!(m, Message::Assistant { tool_calls, .. } if !tool_calls.is_empty())).count();
    let failed = matches!(req.messages.last(), Some(Message::Tool { is_error: true, .. }));
    let matched = chosen.first().filter(|e| !words(e.task).is_disjoint(&words(&task)));
    let next = match matched {
        Some(e) if calls < e.steps.len() && !failed && (calls > 0 || req.require_tool) => Some(e.steps[calls].0.to_string()),
        _ => None,
    };
    (out, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_tools() -> Vec<ToolSpec> {
        crate::tools::specs(&owl_core::agent::DEFAULT_TOOLS.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn every_example_is_a_valid_call_of_a_known_tool() {
        for e in EXAMPLES {
            for (tool, args, _) in e.steps {
                assert!(crate::tools::spec(tool).is_some(), "{}: no tool {tool}", e.task);
                let v: serde_json::Value = serde_json::from_str(args).unwrap_or_else(|err| panic!("{}: {err}", e.task));
                assert!(v.is_object(), "{}", e.task);
            }
        }
    }

    #[test]
    fn examples_are_chosen_by_the_words_a_task_shares_with_them() {
        let tools = all_tools();
        let best = |t: &str| select(t, &tools)[0].steps[0].0;
        assert_eq!(best("Rename a.txt to b.txt"), "shell");
        assert_eq!(best("Please remember for later that the door code is 42"), "memory_add");
        assert_eq!(best("Which file mentions owls?"), "grep");
        assert_eq!(best("Read plan.md and tell me when it starts"), "read_file");
        assert_eq!(best("Read notes.txt. When is the meeting?"), "read_file", "a file name is not the task's intent");
        assert_eq!(words("Rename draft.txt to reports/final.txt, please."), words("rename please"));
        // Without the shell, no example that needs it is shown.
        let no_shell: Vec<ToolSpec> = tools.iter().filter(|t| t.name != "shell").cloned().collect();
        assert!(select("Rename a.txt to b.txt", &no_shell).iter().all(|e| e.steps.iter().all(|s| s.0 != "shell")));
    }

    #[test]
    fn a_two_call_example_sets_the_next_call_unless_the_last_one_failed() {
        let call = |id: &str, name: &str| Message::Assistant {
            content: String::new(),
            tool_calls: vec![crate::msg::ToolCall { id: id.into(), name: name.into(), arguments: serde_json::json!({"query": "hint"}) }],
        };
        let result = |id: &str, is_error: bool| Message::Tool {
            call_id: id.into(),
            name: "memory_search".into(),
            content: "the hint is heron".into(),
            is_error,
        };
        let mut req = ChatRequest {
            model: String::new(),
            messages: vec![Message::User { content: "Look in your memory for the door code and write it to code.txt".into() }],
            tools: all_tools(),
            max_output_tokens: 100,
            temperature: None,
            require_tool: true,
            forbid_tools: false,
            stream: false,
        };
        assert_eq!(render(&req, "").1.as_deref(), Some("memory_search"));
        req.require_tool = false;
        assert_eq!(render(&req, "").1, None, "the first call is set only when a tool must be used");
        req.messages.extend([call("1", "memory_search"), result("1", false)]);
        assert_eq!(render(&req, "").1.as_deref(), Some("write_file"));
        req.messages.pop();
        req.messages.push(result("1", true));
        assert_eq!(render(&req, "").1, None, "after a failed call the model chooses");
        // A task that shares no word with any example gets no plan.
        let other = ChatRequest { messages: vec![Message::User { content: "zzz qqq".into() }], require_tool: true, ..req };
        assert_eq!(render(&other, "").1, None);
    }

    #[test]
    fn recalled_facts_precede_the_task_and_earlier_tasks_are_left_out() {
        let text = "Memories that may be relevant (from earlier work). Cite one.\n[recalled memory #3] (knowledge) the hint is blue heron\n[recalled memory #4] (task) Rename a.txt: done\n\nWrite the hint to hint.txt";
        let (facts, task) = split_recalled(text);
        assert_eq!(facts, vec!["the hint is blue heron".to_string()]);
        assert_eq!(task, "Write the hint to hint.txt");
        let found = "[recalled memory #3] (knowledge) the hint is blue heron\n[recalled memory #4] (task) Rename a.txt: done";
        assert_eq!(result_text(found, false), "the hint is blue heron");
    }

    #[test]
    fn the_prompt_ends_with_the_task_and_its_calls_so_far() {
        let mut req = ChatRequest {
            model: String::new(),
            messages: vec![
                Message::System { content: "BASE extra rule".into() },
                Message::User { content: "Rename a.txt to b.txt".into() },
            ],
            tools: all_tools(),
            max_output_tokens: 100,
            temperature: None,
            require_tool: true,
            forbid_tools: false,
            stream: false,
        };
        let (p, next) = render(&req, "BASE");
        assert!(p.contains("extra rule\n") && !p.contains("BASE"), "{p}");
        assert!(p.ends_with("Task: Rename a.txt to b.txt\n"), "{p}");
        assert_eq!(next.as_deref(), Some("shell"));
        req.messages.push(Message::Assistant {
            content: String::new(),
            tool_calls: vec![crate::msg::ToolCall {
                id: "1".into(),
                name: "shell".into(),
                arguments: serde_json::json!({"command": "mv a.txt b.txt"}),
            }],
        });
        req.messages.push(Message::Tool {
            call_id: "1".into(),
            name: "shell".into(),
            content: "exit code 0\n--- stdout ---\n--- stderr ---\n".into(),
            is_error: false,
        });
        let (p, next) = render(&req, "BASE");
        assert!(p.ends_with("Task: Rename a.txt to b.txt\n{\"tool\": \"shell\", \"arguments\": {\"command\": \"mv a.txt b.txt\"}}\nResult: exit code 0\n"), "{p}");
        assert_eq!(next, None, "the rename example has one call; then the model answers or calls what it likes");
        let line = call_line(&req.tools, "edit_file", &serde_json::json!({"new": "b", "old": "a", "path": "f"}));
        assert_eq!(line, r#"{"tool": "edit_file", "arguments": {"path": "f", "old": "a", "new": "b"}}"#, "in the grammar's order");
    }
}
