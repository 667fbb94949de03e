//! owl-llama: a GGUF model run in-process with llama.cpp, through the llama-cpp-2 crate.
//!
//! One [`LocalModel`] is loaded once and generates one completion at a time (a mutex
//! serialises callers; a 270M model answers fast enough that a queue is simpler than
//! several contexts). Each call gets a fresh context, optionally constrained by a GBNF
//! grammar so that even a small model emits well-formed JSON.
//!
//! Constrained decoding samples first and consults the grammar only about the chosen token;
//! when the grammar rejects it, only the likeliest few hundred candidates are masked and the
//! token sampled again from them (the whole vocabulary only if the grammar admits none of those).
//! Checking one token, or a few hundred, instead of a 262k vocabulary is what makes it nearly as
//! fast as free decoding, and with greedy decoding the output is the same token for token.

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub mod slim;

static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();

fn backend() -> Result<&'static LlamaBackend, String> {
    BACKEND
        .get_or_init(|| {
            let mut b = LlamaBackend::init().map_err(|e| format!("cannot start llama.cpp: {e}"))?;
            if std::env::var_os("OWL_LLAMA_LOG").is_none() {
                b.void_logs();
            }
            Ok(b)
        })
        .as_ref()
        .map_err(|e| e.clone())
}

pub struct LocalModel {
    model: LlamaModel,
    threads: i32,
    context: u32,
    busy: Mutex<()>,
    constrain: Constrain,
}

/// How a grammar constrains sampling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Constrain {
    /// Sample, then check only the chosen token; mask everything only when it is rejected.
    SampleFirst,
    /// Mask every candidate before each sample (llama.cpp's plain grammar sampler).
    Full,
}

/// What one generation produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Generation {
    pub text: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// From the start of the call to the first generated token.
    pub time_to_first_token: Duration,
    pub elapsed: Duration,
    /// Stopped because `max_tokens` ran out (not at an end-of-generation token).
    pub truncated: bool,
}

impl LocalModel {
    /// Loads a GGUF file. `threads` 0 means all cores.
    pub fn load(path: &Path, threads: u32, context: u32) -> Result<LocalModel, String> {
        let backend = backend()?;
        if !path.is_file() {
            return Err(format!("the model file {} does not exist (scripts/fetch-models fetches gemma-3-270m)", path.display()));
        }
        // A Q8_0 token table is loaded from its Q5_0 copy (see `slim`): 60 MiB less memory.
        let slimmed = match slim::slim_table(path) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(model = %path.display(), "cannot write a copy with a smaller token table ({e}); loading the file as it is");
                path.to_path_buf()
            }
        };
        let path = slimmed.as_path();
        // Read, not mapped: llama.cpp repacks some matrices into a layout of its own, and the
        // mapped pages it read them from would stay resident beside the copy (13 MiB for
        // gemma-3-270m). Read into memory, every weight is held once.
        let model = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default().with_use_mmap(false))
            .map_err(|e| format!("cannot load {}: {e}", path.display()))?;
        let threads = if threads == 0 { std::thread::available_parallelism().map(|n| n.get() as i32).unwrap_or(2) } else { threads as i32 };
        let context = if context == 0 { 8192 } else { context }.min(model.n_ctx_train().max(512));
        Ok(LocalModel { model, threads, context, busy: Mutex::new(()), constrain: Constrain::SampleFirst })
    }

    /// Chooses how grammars constrain sampling (for comparisons; the default is the fast one).
    pub fn set_constrain(&mut self, c: Constrain) {
        self.constrain = c;
    }

    /// The context size calls get, in tokens.
    pub fn context(&self) -> u32 {
        self.context
    }

    /// Renders a conversation with the model's own chat template (roles: system, user, assistant).
    pub fn chat_prompt(&self, messages: &[(String, String)]) -> Result<String, String> {
        // A GGUF without an embedded template gets llama.cpp's built-in one for its family.
        let tmpl = match self.model.chat_template(None) {
            Ok(t) => t,
            Err(_) => {
                let arch = self.model.meta_val_str("general.architecture").unwrap_or_default();
                let name = if arch.starts_with("gemma") { "gemma" } else { "chatml" };
                LlamaChatTemplate::new(name).map_err(|e| format!("chat template: {e}"))?
            }
        };
        let chat = messages
            .iter()
            .map(|(r, c)| LlamaChatMessage::new(r.clone(), c.clone()).map_err(|e| format!("bad message: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        self.model.apply_chat_template(&tmpl, &chat, true).map_err(|e| format!("cannot apply the chat template: {e}"))
    }

    /// A plain-text prompt (no chat turns) with the model's start token, for few-shot completion.
    pub fn plain_prompt(&self, text: &str) -> String {
        let vocab = self.model.vocab();
        if !vocab.should_add_bos() {
            return text.to_string();
        }
        let bos = vocab.token_to_piece(vocab.bos(), true, None);
        format!("{}{text}", String::from_utf8_lossy(&bos))
    }

    /// Generates up to `max_tokens` after `prompt`. With a grammar (GBNF, root rule `root`),
    /// every token is constrained by it. `temperature` 0 decodes greedily. Each decoded
    /// piece goes to `on_piece` as it is produced.
    pub fn generate(
        &self,
        prompt: &str,
        grammar: Option<&str>,
        max_tokens: u32,
        temperature: f32,
        on_piece: &mut dyn FnMut(&str),
    ) -> Result<Generation, String> {
        let _one_at_a_time = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        let backend = backend()?;
        let vocab = self.model.vocab();
        // The chat template writes the BOS token itself; special tokens in it are parsed.
        let tokens = vocab.tokenize(prompt.as_bytes(), false, true);
        if tokens.is_empty() {
            return Err("the prompt is empty".into());
        }
        if tokens.len() as u32 + max_tokens > self.context {
            return Err(format!(
                "the conversation is {} tokens; with {max_tokens} to generate it exceeds the local model's context of {} (providers.*.context)",
                tokens.len(),
                self.context
            ));
        }
        // Each call's context holds what this conversation and its reply need, not the
        // largest window: the KV cache is most of a loaded model's memory.
        let n_ctx = (tokens.len() as u32 + max_tokens).div_ceil(256).saturating_mul(256).clamp(512, self.context);
        // The batch bounds the logits buffer llama.cpp reserves (vocabulary × batch × 4 bytes:
        // 512 MB for gemma's 262k tokens at 512); 64 keeps it at 64 MB for a little prompt speed.
        let n_batch = n_ctx.min(64);
        // The compute buffer is sized for the physical batch (its logits alone are vocabulary
        // × ubatch × 4 bytes), so the prompt goes through 16 tokens at a time; and layers with
        // a sliding window keep only their window, not the whole context.
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(n_batch)
            .with_n_ubatch(n_batch.min(16))
            .with_swa_full(false)
            .with_n_threads(self.threads)
            .with_n_threads_batch(self.threads);
        let mut ctx = self.model.new_context(backend, params).map_err(|e| format!("cannot create a context: {e}"))?;
        // The prompt goes in chunks of the batch size; only its last token needs logits.
        let chunk = n_batch as usize;
        let mut batch = LlamaBatch::new(chunk, 1);
        for (ci, part) in tokens.chunks(chunk).enumerate() {
            batch.clear();
            for (i, t) in part.iter().enumerate() {
                let pos = (ci * chunk + i) as i32;
                let last = ci * chunk + i == tokens.len() - 1;
                batch.add(*t, pos, &[0], last).map_err(|e| format!("batch: {e}"))?;
            }
            ctx.decode(&mut batch).map_err(|e| format!("cannot evaluate the prompt: {e}"))?;
        }
        tracing_stage("prompt evaluated");
        let mut grammar = match grammar {
            Some(g) => Some(LlamaSampler::grammar(&self.model, g, "root").map_err(|e| format!("the grammar is invalid: {e}"))?),
            None => None,
        };
        let mut samplers = Vec::new();
        if self.constrain == Constrain::Full {
            samplers.extend(grammar.take());
        }
        if temperature <= 0.0 {
            samplers.push(LlamaSampler::greedy());
        } else {
            samplers.push(LlamaSampler::top_k(40));
            samplers.push(LlamaSampler::top_p(0.95, 1));
            samplers.push(LlamaSampler::temp(temperature));
            samplers.push(LlamaSampler::dist(fastrand_seed()));
        }
        tracing_stage("grammar built");
        let mut sampler = LlamaSampler::chain_simple(samplers);
        let mut text = String::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut n_past = tokens.len() as i32;
        let mut generated = 0u64;
        let mut ttft = None;
        let mut truncated = true;
        let mut last_idx = batch.n_tokens() - 1;
        while generated < max_tokens as u64 {
            // `sample` also accepts the token into every sampler of the chain (with
            // `Constrain::Full` the grammar's state advances there); accepting again would
            // corrupt it.
            let mut token = sampler.sample(&ctx, last_idx);
            if let Some(g) = grammar.as_mut() {
                let mut one = LlamaTokenDataArray::new(vec![LlamaTokenData::new(token, 1.0, 0.0)], false);
                g.apply(&mut one);
                if !one.data[0].logit().is_finite() {
                    // Rejected: ask the grammar about the most likely candidates first, and
                    // about the whole vocabulary only when it admits none of them. Every token
                    // left out has a lower logit than each one asked about, so the best
                    // admitted token is the same either way (greedy output does not change).
                    let mut top = LlamaTokenDataArray::new(top_candidates(ctx.get_logits_ith(last_idx), RETRY_CANDIDATES), false);
                    g.apply(&mut top);
                    let mut all = if top.data.iter().any(|d| d.logit().is_finite()) {
                        top
                    } else {
                        let mut all = ctx.token_data_array_ith(last_idx);
                        g.apply(&mut all);
                        all
                    };
                    all.apply_sampler(&mut sampler);
                    token = all.selected_token().ok_or("the grammar admits no token here")?;
                    sampler.accept(token);
                }
                g.accept(token);
            }
            if vocab.is_eog(token) {
                truncated = false;
                break;
            }
            generated += 1;
            ttft.get_or_insert_with(|| started.elapsed());
            let piece = vocab.token_to_piece(token, false, None);
            pending.extend_from_slice(&piece);
            // Hand out only complete UTF-8; a multi-byte character may span tokens.
            match std::str::from_utf8(&pending) {
                Ok(s) => {
                    on_piece(s);
                    text.push_str(s);
                    pending.clear();
                }
                Err(e) if e.error_len().is_some() => {
                    let s = String::from_utf8_lossy(&pending).into_owned();
                    on_piece(&s);
                    text.push_str(&s);
                    pending.clear();
                }
                Err(_) => {}
            }
            batch.clear();
            batch.add(token, n_past, &[0], true).map_err(|e| format!("batch: {e}"))?;
            n_past += 1;
            ctx.decode(&mut batch).map_err(|e| format!("cannot generate: {e}"))?;
            last_idx = 0;
        }
        Ok(Generation {
            text,
            prompt_tokens: tokens.len() as u64,
            completion_tokens: generated,
            time_to_first_token: ttft.unwrap_or_else(|| started.elapsed()),
            elapsed: started.elapsed(),
            truncated,
        })
    }
}

/// How many of the likeliest tokens the grammar is asked about after it rejects the sampled one.
/// Sampling keeps at most 40 (top-k), so 512 leaves room for the grammar to rule many out.
const RETRY_CANDIDATES: usize = 512;

/// The `n` tokens with the highest logits, best first.
fn top_candidates(logits: &[f32], n: usize) -> Vec<LlamaTokenData> {
    let mut all: Vec<(f32, i32)> = logits.iter().enumerate().map(|(i, l)| (*l, i as i32)).collect();
    let by_logit = |a: &(f32, i32), b: &(f32, i32)| b.0.total_cmp(&a.0);
    if all.len() > n {
        all.select_nth_unstable_by(n, by_logit);
        all.truncate(n);
    }
    all.sort_unstable_by(by_logit);
    all.into_iter().map(|(l, i)| LlamaTokenData::new(LlamaToken::new(i), l, 0.0)).collect()
}

fn fastrand_seed() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(42)
}

fn tracing_stage(s: &str) {
    if std::env::var_os("OWL_LLAMA_LOG").is_some() {
        eprintln!("owl-llama: {s}");
    }
}
