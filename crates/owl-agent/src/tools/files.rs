//! File tools confined to the workspace: read_file, write_file, edit_file, list_dir, grep.

use super::{args, ToolCtx};
use serde::Deserialize;
use serde_json::Value;
use std::io::Read;
use std::path::Path;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadArgs {
    path: String,
    #[serde(default)]
    offset: Option<usize>,
    #[serde(default)]
    limit: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteArgs {
    path: String,
    content: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EditArgs {
    path: String,
    old: String,
    new: String,
    #[serde(default)]
    replace_all: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListArgs {
    #[serde(default)]
    path: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrepArgs {
    pattern: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    ignore_case: bool,
}

/// Files larger than this are not read whole.
const MAX_READ: u64 = 8 * 1024 * 1024;
const MAX_GREP_MATCHES: usize = 200;

pub(super) async fn call(ctx: &ToolCtx, name: &str, arguments: &Value) -> Result<String, String> {
    // File work is short and local: run it on the blocking pool so the loop never stalls.
    let ws = ctx.ws.clone();
    let name = name.to_string();
    let arguments = arguments.clone();
    tokio::task::spawn_blocking(move || match name.as_str() {
        "read_file" => read(&ws, args(&name, &arguments)?),
        "write_file" => {
            let a: WriteArgs = args(&name, &arguments)?;
            ws.write(&a.path, a.content.as_bytes())?;
            Ok(format!("wrote {} bytes to {}", a.content.len(), a.path))
        }
        "edit_file" => edit(&ws, args(&name, &arguments)?),
        "list_dir" => list(&ws, args(&name, &arguments)?),
        "grep" => grep(&ws, args(&name, &arguments)?),
        _ => Err(format!("there is no tool `{name}`")),
    })
    .await
    .map_err(|e| format!("the tool failed: {e}"))?
}

fn read_text(ws: &crate::confine::Workspace, path: &str) -> Result<String, String> {
    let (_, f) = ws.open_read(path)?;
    let meta = f.metadata().map_err(|e| e.to_string())?;
    if meta.is_dir() {
        return Err(format!("`{path}` is a directory; use list_dir"));
    }
    if meta.len() > MAX_READ {
        return Err(format!("`{path}` is {} bytes; files over {MAX_READ} bytes are not read", meta.len()));
    }
    let mut bytes = Vec::new();
    f.take(MAX_READ).read_to_end(&mut bytes).map_err(|e| format!("cannot read `{path}`: {e}"))?;
    String::from_utf8(bytes).map_err(|_| format!("`{path}` is not UTF-8 text"))
}

fn read(ws: &crate::confine::Workspace, a: ReadArgs) -> Result<String, String> {
    let text = read_text(ws, &a.path)?;
    if a.offset.is_none() && a.limit.is_none() {
        return Ok(text);
    }
    let start = a.offset.unwrap_or(1).max(1) - 1;
    let lines: Vec<&str> = text.lines().skip(start).take(a.limit.unwrap_or(usize::MAX)).collect();
    Ok(lines.join("\n"))
}

fn edit(ws: &crate::confine::Workspace, a: EditArgs) -> Result<String, String> {
    if a.old.is_empty() {
        return Err("`old` is empty; give the exact text to replace".into());
    }
    let text = read_text(ws, &a.path)?;
    let n = text.matches(&a.old).count();
    if n == 0 {
        return Err(format!("`old` does not occur in {}; read the file and copy the text exactly", a.path));
    }
    if n > 1 && !a.replace_all {
        return Err(format!("`old` occurs {n} times in {}; include more context to make it unique, or set replace_all", a.path));
    }
    let out = if a.replace_all { text.replace(&a.old, &a.new) } else { text.replacen(&a.old, &a.new, 1) };
    ws.write(&a.path, out.as_bytes())?;
    Ok(format!("replaced {} occurrence{} in {}", n, if n == 1 { "" } else { "s" }, a.path))
}

fn list(ws: &crate::confine::Workspace, a: ListArgs) -> Result<String, String> {
    let rel = a.path.unwrap_or_else(|| ".".into());
    let dir = ws.resolve(&rel)?;
    let mut rows = Vec::new();
    for e in std::fs::read_dir(&dir).map_err(|e| format!("cannot list `{rel}`: {e}"))?.flatten() {
        let Ok(m) = e.path().symlink_metadata() else { continue };
        let name = e.file_name().to_string_lossy().into_owned();
        let kind = if m.is_dir() {
            "dir".to_string()
        } else if m.file_type().is_symlink() {
            "symlink".to_string()
        } else {
            format!("{} bytes", m.len())
        };
        rows.push(format!("{name}{}\t{kind}", if m.is_dir() { "/" } else { "" }));
    }
    rows.sort();
    if rows.is_empty() {
        return Ok(format!("{rel} is empty"));
    }
    Ok(rows.join("\n"))
}

fn grep(ws: &crate::confine::Workspace, a: GrepArgs) -> Result<String, String> {
    if a.pattern.is_empty() {
        return Err("`pattern` is empty".into());
    }
    let rel = a.path.clone().unwrap_or_else(|| ".".into());
    let start = ws.resolve(&rel)?;
    let needle = if a.ignore_case { a.pattern.to_lowercase() } else { a.pattern.clone() };
    let mut hits = Vec::new();
    let mut stack = vec![start];
    let mut files = 0usize;
    while let Some(p) = stack.pop() {
        let Ok(m) = p.symlink_metadata() else { continue };
        if m.file_type().is_symlink() {
            continue; // never followed: it may point outside
        }
        if m.is_dir() {
            if p.file_name().is_some_and(|n| n == ".git") {
                continue;
            }
            if let Ok(rd) = std::fs::read_dir(&p) {
                let mut children: Vec<_> = rd.flatten().map(|e| e.path()).collect();
                children.sort();
                children.reverse();
                stack.extend(children);
            }
            continue;
        }
        files += 1;
        if m.len() > MAX_READ || files > 20_000 {
            continue;
        }
        let Ok(bytes) = std::fs::read(&p) else { continue };
        if bytes.contains(&0) {
            continue; // binary
        }
        let text = String::from_utf8_lossy(&bytes);
        for (i, line) in text.lines().enumerate() {
            let hay = if a.ignore_case { line.to_lowercase() } else { line.to_string() };
            if hay.contains(&needle) {
                hits.push(format!("{}:{}: {}", ws.show(Path::new(&p)), i + 1, line.chars().take(300).collect::<String>()));
                if hits.len() >= MAX_GREP_MATCHES {
                    hits.push(format!("[stopped after {MAX_GREP_MATCHES} matches]"));
                    return Ok(hits.join("\n"));
                }
            }
        }
    }
    if hits.is_empty() {
        return Ok(format!("no matches for `{}` in {rel}", a.pattern));
    }
    Ok(hits.join("\n"))
}
