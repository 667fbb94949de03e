//! `owl memory`: add, search, ls, show, rm, import, export, stats, reindex.

use crate::cli::MemoryAction;
use crate::client::Client;
use crate::output::print_json;
use anyhow::{bail, Context, Result};
use owl_api::{Added, MemoryItem, NewMemory};
use owl_api::{MemoryAddedList, MemoryBatch, MemoryList, MemorySearch, MemorySearchReply, MemoryStats};
use std::io::{IsTerminal, Write};
use std::path::Path;

/// Imported text is cut into chunks of about this many characters, at paragraph boundaries.
const CHUNK_CHARS: usize = 1500;

pub async fn run(client: &Client, action: MemoryAction, json: bool) -> Result<()> {
    match action {
        MemoryAction::Add { text, kind, tag, agent, user, source } => {
            let item = NewMemory { text, kind, tags: tag, source: source.or(Some("cli".into())), agent, user };
            let a: Added = client.post("/v1/memory", &item).await?;
            if json {
                print_json(&a);
            } else {
                match a {
                    Added::Created { id } => println!("{id}"),
                    Added::Merged { id } => println!("{id} (already known: merged into memory {id})"),
                }
            }
        }
        MemoryAction::Search { query, k, kind, tag, agent, user, since, recency, mmr, explain } => {
            let req = MemorySearch { text: query, k: Some(k), kind, tag, agent, user, since, recency, mmr };
            let r: MemorySearchReply = client.post("/v1/memory/search", &req).await?;
            if json {
                print_json(&r);
                return Ok(());
            }
            if let Some(n) = &r.note {
                eprintln!("note: full-text search only: {n}");
            }
            if r.hits.is_empty() {
                println!("no memories match");
            }
            for (i, h) in r.hits.iter().enumerate() {
                println!("{:>3}. #{:<6} {:<12} {}", i + 1, h.item.id, h.item.kind, one_line(&h.item.text, 100));
                if explain {
                    let mut why = vec![format!("score {:.4}", h.score)];
                    match (h.vector_rank, h.similarity) {
                        (Some(r), Some(s)) => why.push(format!("meaning: rank {r}, similarity {s:.3}")),
                        _ => why.push("meaning: not among the nearest".into()),
                    }
                    match (h.text_rank, h.bm25) {
                        (Some(r), Some(b)) => why.push(format!("words: rank {r}, bm25 {b:.2}")),
                        _ => why.push("words: no match".into()),
                    }
                    if let Some(b) = h.recency_boost {
                        why.push(format!("recency ×{b:.2}"));
                    }
                    println!("       {}", why.join(" · "));
                }
            }
        }
        MemoryAction::Ls { kind, tag, since, limit } => {
            let mut q = vec![format!("limit={limit}")];
            if !kind.is_empty() {
                q.push(format!("kind={}", kind.join(",")));
            }
            if !tag.is_empty() {
                q.push(format!("tag={}", tag.join(",")));
            }
            if let Some(s) = since {
                q.push(format!("since={s}"));
            }
            let l: MemoryList = client.get(&format!("/v1/memory?{}", q.join("&"))).await?;
            if json {
                print_json(&l);
            } else {
                for m in &l.items {
                    let tags = if m.tags.is_empty() { String::new() } else { format!("  [{}]", m.tags.join(", ")) };
                    println!("#{:<6} {:<12} {}{tags}", m.id, m.kind, one_line(&m.text, 90));
                }
            }
        }
        MemoryAction::Show { id } => {
            let m: MemoryItem = client.get(&format!("/v1/memory/{}", id.trim_start_matches('#'))).await?;
            if json {
                print_json(&m);
            } else {
                println!("memory {}  ({})", m.id, m.kind);
                if !m.tags.is_empty() {
                    println!("  tags      {}", m.tags.join(", "));
                }
                for (k, v) in [("source", &m.source), ("agent", &m.agent), ("user", &m.user)] {
                    if let Some(v) = v {
                        println!("  {k:<9} {v}");
                    }
                }
                println!("  created   {}", owl_core::Timestamp::from_millis(m.created_at));
                println!(
                    "  used      {} times{}",
                    m.access_count,
                    m.accessed_at.map(|t| format!(", last {}", owl_core::Timestamp::from_millis(t))).unwrap_or_default()
                );
                println!();
                println!("{}", m.text);
            }
        }
        MemoryAction::Rm { id } => {
            let v: serde_json::Value = {
                let resp =
                    client.request(reqwest::Method::DELETE, &format!("/v1/memory/{}", id.trim_start_matches('#')), None::<&()>).await?;
                resp.json().await?
            };
            if json {
                print_json(&v);
            } else {
                println!("forgot memory {}", v["deleted"]);
            }
        }
        MemoryAction::Import { files, kind, tag } => {
            let mut items = Vec::new();
            for f in &files {
                items.extend(read_import(f, &kind, &tag)?);
            }
            let total = items.len();
            let tty = std::io::stderr().is_terminal() && !json;
            let (mut created, mut merged) = (0usize, 0usize);
            let mut done = 0usize;
            for batch in items.chunks(64) {
                let r: MemoryAddedList = client.post("/v1/memory/batch", &MemoryBatch { items: batch.to_vec() }).await?;
                for a in r.results {
                    match a {
                        Added::Created { .. } => created += 1,
                        Added::Merged { .. } => merged += 1,
                    }
                }
                done += batch.len();
                if tty {
                    let width = 30;
                    let filled = done * width / total.max(1);
                    eprint!("\r[{}{}] {done}/{total} chunks", "#".repeat(filled), ".".repeat(width - filled));
                    let _ = std::io::stderr().flush();
                } else if !json && total > 256 {
                    eprintln!("imported {done}/{total} chunks");
                }
            }
            if tty {
                eprintln!();
            }
            if json {
                print_json(&serde_json::json!({"files": files.len(), "chunks": total, "created": created, "merged": merged}));
            } else {
                println!("{total} chunks from {} files: {created} new, {merged} merged into existing memories", files.len());
            }
        }
        MemoryAction::Export => {
            let mut before: Option<i64> = None;
            let mut out = std::io::stdout().lock();
            loop {
                let path = match before {
                    Some(b) => format!("/v1/memory?limit=1000&before={b}"),
                    None => "/v1/memory?limit=1000".into(),
                };
                let l: MemoryList = client.get(&path).await?;
                for m in &l.items {
                    writeln!(out, "{}", serde_json::to_string(m)?)?;
                }
                match l.items.last() {
                    Some(m) if l.items.len() == 1000 => before = Some(m.id),
                    _ => break,
                }
            }
        }
        MemoryAction::Stats => {
            let s: MemoryStats = client.get("/v1/memory/stats").await?;
            if json {
                print_json(&s);
            } else {
                println!("items        {}", s.items);
                for (k, n) in &s.kinds {
                    println!("  {k:<11} {n}");
                }
                match (&s.model, s.semantic) {
                    (Some(m), true) => println!("embeddings   {m}: {} of {} items have a vector", s.with_vectors, s.items),
                    _ => println!("embeddings   off: {}", s.note.clone().unwrap_or_default()),
                }
            }
        }
        MemoryAction::Reindex => {
            let v: serde_json::Value = client.post("/v1/memory/reindex", &serde_json::json!({})).await?;
            if json {
                print_json(&v);
            } else {
                println!("indexed {} memories", v["indexed"]);
            }
        }
    }
    Ok(())
}

fn one_line(s: &str, n: usize) -> String {
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > n {
        format!("{}…", flat.chars().take(n).collect::<String>())
    } else {
        flat
    }
}

/// A file's items: JSONL lines as they are; Markdown by section; text by paragraph; each cut
/// into chunks of about `CHUNK_CHARS` at paragraph boundaries.
pub fn read_import(path: &Path, kind: &str, tags: &[String]) -> Result<Vec<NewMemory>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let source = path.display().to_string();
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let item =
        |t: String, src: String| NewMemory { text: t, kind: kind.into(), tags: tags.to_vec(), source: Some(src), agent: None, user: None };
    if ext == "jsonl" {
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let mut m: NewMemory = serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not a memory object (need at least \"text\")", path.display(), i + 1))?;
            if m.kind.is_empty() {
                m.kind = kind.into();
            }
            if m.source.is_none() {
                m.source = Some(format!("{source}:{}", i + 1));
            }
            m.tags.extend(tags.iter().cloned());
            out.push(m);
        }
        return Ok(out);
    }
    let sections: Vec<(String, String)> = if ext == "md" || ext == "markdown" {
        let mut secs: Vec<(String, String)> = vec![(String::new(), String::new())];
        for line in text.lines() {
            if line.starts_with('#') {
                secs.push((line.trim_start_matches('#').trim().to_string(), format!("{line}\n")));
            } else {
                secs.last_mut().expect("one section at least").1.push_str(&format!("{line}\n"));
            }
        }
        secs
    } else {
        vec![(String::new(), text.clone())]
    };
    let mut out = Vec::new();
    for (heading, body) in sections {
        let src = if heading.is_empty() { source.clone() } else { format!("{source}#{heading}") };
        for chunk in chunks(&body, CHUNK_CHARS) {
            // A chunk that continues a section keeps its heading, so it reads on its own.
            let t = if !heading.is_empty() && !chunk.starts_with('#') { format!("{heading}: {chunk}") } else { chunk };
            out.push(item(t, src.clone()));
        }
    }
    if out.is_empty() {
        bail!("{} has no text to import", path.display());
    }
    Ok(out)
}

/// Paragraphs joined up to `max` characters; a paragraph longer than that is cut at sentence
/// or word boundaries.
pub fn chunks(text: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let paragraphs = text.split("\n\n").map(str::trim).filter(|p| !p.is_empty());
    for p in paragraphs {
        let pieces: Vec<String> = if p.chars().count() <= max { vec![p.to_string()] } else { split_long(p, max) };
        for piece in pieces {
            if !cur.is_empty() && cur.chars().count() + piece.chars().count() + 2 > max {
                out.push(std::mem::take(&mut cur));
            }
            if !cur.is_empty() {
                cur.push_str("\n\n");
            }
            cur.push_str(&piece);
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

fn split_long(p: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for word in p.split_inclusive(char::is_whitespace) {
        if cur.chars().count() + word.chars().count() > max && !cur.is_empty() {
            out.push(cur.trim().to_string());
            cur.clear();
        }
        cur.push_str(word);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_chunked_at_paragraphs_and_words_under_the_limit() {
        let para = "word ".repeat(100);
        let text = format!("{para}\n\n{para}\n\nshort one\n\n{}", "x ".repeat(2000));
        let c = chunks(&text, 600);
        assert!(c.iter().all(|x| x.chars().count() <= 600), "{:?}", c.iter().map(|x| x.len()).collect::<Vec<_>>());
        assert!(c.iter().any(|x| x.contains("\n\nshort one") || x.contains("short one\n\n")), "small paragraphs are joined: {c:?}");
        let joined: String = c.join(" ").split_whitespace().collect();
        let orig: String = text.split_whitespace().collect();
        assert_eq!(joined, orig, "nothing is lost");
    }

    #[test]
    fn markdown_imports_by_section_with_headings_kept() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("notes.md");
        std::fs::write(&p, "intro line\n\n# Deploys\nOnly on Tuesdays.\n\n## Rollback\nUse the previous tag.\n").unwrap();
        let items = read_import(&p, "knowledge", &["ops".into()]).unwrap();
        assert_eq!(items.len(), 3);
        assert!(items[1].text.contains("Deploys") && items[1].text.contains("Tuesdays"));
        assert_eq!(items[2].source.as_deref(), Some(format!("{}#Rollback", p.display()).as_str()));
        assert_eq!(items[0].tags, vec!["ops"]);
        let j = t.path().join("m.jsonl");
        std::fs::write(&j, "{\"text\":\"a\",\"kind\":\"preference\"}\n\n{\"id\":3,\"text\":\"b\",\"kind\":\"\",\"created_at\":1}\n")
            .unwrap();
        let items = read_import(&j, "knowledge", &[]).unwrap();
        assert_eq!((items[0].kind.as_str(), items[1].kind.as_str()), ("preference", "knowledge"));
        std::fs::write(&j, "not json\n").unwrap();
        assert!(read_import(&j, "knowledge", &[]).unwrap_err().to_string().contains("m.jsonl:1"));
    }
}
