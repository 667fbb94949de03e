//! The embedded local provider: a GGUF model in-process (owl-llama), with grammar-constrained
//! decoding so that every reply is one well-formed JSON object: a tool call whose arguments
//! carry exactly the tool's required fields with their types, or a final answer.

use crate::msg::{ChatRequest, ChatResponse, Delta, Sink, ToolCall, ToolSpec, Usage};
use crate::provider::{Provider, ProviderError};
use async_trait::async_trait;
use serde_json::Value;
use std::sync::Arc;

pub struct Local {
    name: String,
    model_name: String,
    path: std::path::PathBuf,
    threads: u32,
    context: u32,
    keep_alive: std::time::Duration,
    /// Loaded on first use, so an idle daemon does not hold the weights, and unloaded again
    /// after `keep_alive` without a call.
    slot: Arc<Slot>,
}

#[derive(Default)]
struct Slot {
    /// The model and when it was last used.
    loaded: tokio::sync::Mutex<Option<(Arc<owl_llama::LocalModel>, std::time::Instant)>>,
}

impl Local {
    pub fn new(name: &str, path: &str, threads: u32, context: u32, keep_alive: std::time::Duration) -> Result<Local, String> {
        let p = std::path::Path::new(path);
        if !p.is_file() {
            return Err(format!("[providers.{name}] model_path: {path} does not exist (scripts/fetch-models fetches gemma-3-270m)"));
        }
        let model_name = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(Local { name: name.into(), model_name, path: p.to_path_buf(), threads, context, keep_alive, slot: Arc::default() })
    }

    /// Whether the weights are in memory now.
    pub async fn is_loaded(&self) -> bool {
        self.slot.loaded.lock().await.is_some()
    }

    async fn model(&self) -> Result<Arc<owl_llama::LocalModel>, ProviderError> {
        let mut g = self.slot.loaded.lock().await;
        if let Some((m, used)) = g.as_mut() {
            *used = std::time::Instant::now();
            return Ok(m.clone());
        }
        let (path, threads, context, name) = (self.path.clone(), self.threads, self.context, self.name.clone());
        let m = tokio::task::spawn_blocking(move || owl_llama::LocalModel::load(&path, threads, context).map(Arc::new))
            .await
            .map_err(|e| ProviderError::Fatal(format!("{name}: loading failed: {e}")))?
            .map_err(|e| ProviderError::Fatal(format!("[providers.{name}] {e}")))?;
        *g = Some((m.clone(), std::time::Instant::now()));
        if !self.keep_alive.is_zero() {
            tokio::spawn(unload_when_idle(Arc::downgrade(&self.slot), self.keep_alive, self.name.clone()));
        }
        Ok(m)
    }

    /// Marks the end of a call: the keep-alive counts from here.
    async fn used(&self) {
        if let Some((_, used)) = self.slot.loaded.lock().await.as_mut() {
            *used = std::time::Instant::now();
        }
    }
}

/// Drops the model once nobody has used it for `keep_alive` (a call in progress holds its own
/// reference, so the weights go only when that call is done too). Ends with the provider.
async fn unload_when_idle(slot: std::sync::Weak<Slot>, keep_alive: std::time::Duration, name: String) {
    let tick = keep_alive.min(std::time::Duration::from_secs(30)).max(std::time::Duration::from_millis(50));
    loop {
        tokio::time::sleep(tick).await;
        let Some(slot) = slot.upgrade() else { return };
        let mut g = slot.loaded.lock().await;
        match g.as_ref() {
            None => return,
            Some((m, used)) if used.elapsed() >= keep_alive && Arc::strong_count(m) == 1 => {
                *g = None;
                tracing::info!(provider = %name, idle_s = keep_alive.as_secs(), "local model unloaded after its keep-alive");
                return;
            }
            Some(_) => {}
        }
    }
}

/// A GBNF string literal matching `s` exactly (tool and field names are ASCII).
fn lit(s: &str) -> String {
    format!("{s:?}")
}

/// GBNF for the reply. Tool calls: `{"tool": "<name>", "arguments": {<required fields>}}`;
/// answers: `{"answer": "<text>"}` (left out when a tool call is required).
pub fn grammar(tools: &[ToolSpec], require_tool: bool) -> String {
    let mut rules = Vec::new();
    let mut alts = Vec::new();
    for (i, t) in tools.iter().enumerate() {
        let props = &t.parameters["properties"];
        let required: Vec<&str> =
            t.parameters["required"].as_array().map(|a| a.iter().filter_map(|v| v.as_str()).collect()).unwrap_or_default();
        let mut fields = Vec::new();
        for (j, f) in required.iter().enumerate() {
            let kind = match props[*f]["type"].as_str() {
                Some("string") => "string",
                Some("integer") => "integer",
                Some("boolean") => "boolean",
                _ => "value",
            };
            let sep = if j == 0 { "" } else { "\",\" ws " };
            fields.push(format!("{sep}{} ws \":\" ws {kind}", lit(&format!("\"{f}\""))));
        }
        let args = if fields.is_empty() { "\"{}\"".to_string() } else { format!("\"{{\" ws {} ws \"}}\"", fields.join(" ws ")) };
        rules.push(format!("args{i} ::= {args}"));
        rules.push(format!(
            "call{i} ::= \"{{\" ws \"\\\"tool\\\"\" ws \":\" ws {} ws \",\" ws \"\\\"arguments\\\"\" ws \":\" ws args{i} ws \"}}\"",
            lit(&format!("\"{}\"", t.name))
        ));
        alts.push(format!("call{i}"));
    }
    if !require_tool || alts.is_empty() {
        rules.push("answer ::= \"{\" ws \"\\\"answer\\\"\" ws \":\" ws text ws \"}\"".into());
        alts.push("answer".into());
    }
    // Small models like to wrap JSON in a markdown fence and to break lines; both are
    // admitted (and stripped when the reply is read), so the grammar rarely has to overrule
    // the token the model prefers, which is both faster and closer to what it knows.
    let mut g = format!("root ::= fence? ( {} ) close?\nfence ::= \"```json\\n\" | \"```\\n\"\nclose ::= \"\\n```\"\n", alts.join(" | "));
    g.push_str(&rules.join("\n"));
    g.push_str(
        r#"
value ::= object | array | string | integer | boolean | "null"
object ::= "{" ws ( string ws ":" ws value ( ws "," ws string ws ":" ws value )* )? ws "}"
array ::= "[" ws ( value ( ws "," ws value )* )? ws "]"
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] ) )* "\""
text ::= "\"" char char* "\""
char ::= [^"\\\x7F\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] )
integer ::= "-"? [0-9] [0-9]*
boolean ::= "true" | "false"
ws ::= ( "\n" [ ]{0,4} | " " )?
"#,
    );
    g
}

/// The JSON inside an optional markdown fence.
pub fn unfence(text: &str) -> &str {
    let t = text.trim();
    let t = t.strip_prefix("```json").or_else(|| t.strip_prefix("```")).unwrap_or(t);
    t.strip_suffix("```").unwrap_or(t).trim()
}

#[async_trait]
impl Provider for Local {
    fn name(&self) -> &str {
        &self.name
    }

    async fn chat(&self, req: &ChatRequest, sink: Sink<'_>) -> Result<ChatResponse, ProviderError> {
        let model = self.model().await?;
        // A small model follows worked examples better than chat instructions (local_prompt.rs);
        // while the task follows the example that fits it best, the next call is that
        // example's next one.
        let (text, next) = crate::local_prompt::render(req, crate::run::SYSTEM_BASE);
        let prompt = model.plain_prompt(&text);
        let grammar = match next {
            _ if req.forbid_tools => grammar(&[], false),
            Some(t) => grammar(&req.tools.iter().filter(|s| s.name == t).cloned().collect::<Vec<_>>(), true),
            None => grammar(&req.tools, req.require_tool),
        };
        let (max, temp) = (req.max_output_tokens, req.temperature.unwrap_or(0.0));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let job =
            tokio::task::spawn_blocking(move || model.generate(&prompt, Some(&grammar), max, temp, &mut |p| drop(tx.send(p.to_string()))));
        // Pieces are JSON fragments; the text shown while streaming is the raw reply.
        while let Some(p) = rx.recv().await {
            if req.stream {
                sink(Delta::Text(p));
            }
        }
        let g = job.await;
        self.used().await;
        let g =
            g.map_err(|e| ProviderError::Fatal(format!("{}: the model thread failed: {e}", self.name)))?.map_err(ProviderError::Fatal)?;
        let usage = Usage { input: g.prompt_tokens, output: g.completion_tokens, cached: 0 };
        if g.truncated {
            return Err(ProviderError::Fatal(format!(
                "{}: the reply did not finish within {max} tokens (agents.*.max_output_tokens)",
                self.name
            )));
        }
        let v: Value = serde_json::from_str(unfence(&g.text))
            .map_err(|e| ProviderError::Fatal(format!("{}: the constrained reply is not JSON ({e}): {}", self.name, g.text)))?;
        let mut out = ChatResponse { usage, model: self.model_name.clone(), ..Default::default() };
        if let Some(tool) = v["tool"].as_str() {
            out.tool_calls.push(ToolCall {
                id: format!("call_{}", fastrand::u32(..)),
                name: tool.into(),
                arguments: v["arguments"].clone(),
            });
            out.stop_reason = "tool_calls".into();
        } else {
            out.content = v["answer"].as_str().unwrap_or_default().to_string();
            out.stop_reason = "stop".into();
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar_names_each_tool_and_its_required_fields() {
        let tools = crate::tools::specs(&["read_file".into(), "list_dir".into()]);
        let g = grammar(&tools, true);
        assert!(g.contains(r#"call0 ::= "{" ws "\"tool\"" ws ":" ws "\"read_file\"""#), "{g}");
        assert!(g.contains(r#"args0 ::= "{" ws "\"path\"" ws ":" ws string ws "}""#), "{g}");
        assert!(g.contains(r#"args1 ::= "{}""#), "{g}");
        assert!(g.starts_with("root ::= fence? ( call0 | call1 ) close?\n"), "a required tool call leaves no answer branch: {g}");
        assert!(grammar(&tools, false).starts_with("root ::= fence? ( call0 | call1 | answer ) close?\n"));
        assert_eq!(unfence("```json\n{\"answer\": \"x\"}\n```"), "{\"answer\": \"x\"}");
        assert_eq!(unfence(" {\"a\": 1} "), "{\"a\": 1}");
    }
}
