//! Sentence embeddings computed in-process: a sentence-transformers BERT model (all-MiniLM-L6-v2
//! by default) run with candle, mean-pooled and L2-normalised, so a dot product is the cosine.

pub use crate::bert::Precision;
use crate::bert::{mean_pooled, Bert, Config};
use candle_core::{Device, Tensor};
use std::path::{Path, PathBuf};
use tokenizers::{Tokenizer, TruncationParams};

/// Something that turns texts into unit vectors of a fixed dimension.
pub trait Embedder: Send + Sync {
    /// The model's name, stored beside each vector (vectors of different models never mix).
    fn model(&self) -> &str;
    fn dim(&self) -> usize;
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String>;
}

/// Where owl looks for the default model: `<cache>/owl/models/all-MiniLM-L6-v2`.
pub fn default_model_dir(cache_dir: &Path) -> PathBuf {
    cache_dir.join("owl/models/all-MiniLM-L6-v2")
}

/// A BERT sentence-embedding model from a directory with `config.json`, `tokenizer.json` and
/// `model.safetensors`.
pub struct BertEmbedder {
    name: String,
    model: Bert,
    precision: Precision,
    tokenizer: Tokenizer,
    dim: usize,
    pad_id: u32,
    device: Device,
}

/// Longest input, in tokens; longer texts are cut (MiniLM was trained on 256).
const MAX_TOKENS: usize = 256;
/// Most texts run through the model at once.
const SLICE: usize = 64;

/// Cuts `order` (indices sorted by `len`) into runs of similar length: a run ends at `SLICE`
/// texts or when the next text is longer than its first by a quarter and 8 tokens, so padding
/// stays small and a batch of like texts still runs whole.
fn slices(order: &[usize], len: impl Fn(usize) -> usize) -> Vec<&[usize]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=order.len() {
        let first = len(order[start]);
        if i == order.len() || i - start == SLICE || len(order[i]) > first + first / 4 + 8 {
            out.push(&order[start..i]);
            start = i;
        }
    }
    out
}

impl BertEmbedder {
    /// Loads the model in `dir` with f32 matrices (the default: see [`Precision`]).
    pub fn load(dir: &Path) -> Result<Self, String> {
        Self::load_with(dir, Precision::F32)
    }

    pub fn load_with(dir: &Path, precision: Precision) -> Result<Self, String> {
        let read = |f: &str| std::fs::read(dir.join(f)).map_err(|e| format!("cannot read {}: {e}", dir.join(f).display()));
        let config: Config = serde_json::from_slice(&read("config.json")?).map_err(|e| format!("{}/config.json: {e}", dir.display()))?;
        let dim = config.hidden_size;
        let device = Device::Cpu;
        let model = Bert::load(&config, &dir.join("model.safetensors"), precision)
            .map_err(|e| format!("{}/model.safetensors: not a BERT model owl can run: {e}", dir.display()))?;
        let mut tokenizer =
            Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| format!("{}/tokenizer.json: {e}", dir.display()))?;
        // Padding is done here per length-sorted slice (see `run`), not by the tokenizer.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: MAX_TOKENS, ..Default::default() }))
            .map_err(|e| format!("tokenizer: {e}"))?;
        // Masked out of attention and the mean, so its value only has to be a valid token.
        let pad_id = tokenizer.token_to_id("[PAD]").unwrap_or(0);
        let name = dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "bert".into());
        Ok(BertEmbedder { name, model, precision, tokenizer, dim, pad_id, device })
    }

    /// Embeds `texts` in input order. The texts are tokenised once, sorted by length and run in
    /// slices of similar length ([`slices`]), so a batch mixing a title and a long section pays
    /// for padding only within its slice, not up to the longest text of the whole batch.
    fn run(&self, texts: &[&str]) -> candle_core::Result<Vec<Vec<f32>>> {
        let enc = self.tokenizer.encode_batch(texts.to_vec(), true).map_err(candle_core::Error::wrap)?;
        let mut order: Vec<usize> = (0..enc.len()).collect();
        order.sort_by_key(|&i| enc[i].get_ids().len());
        let mut out = vec![Vec::new(); enc.len()];
        for slice in slices(&order, |i| enc[i].get_ids().len()) {
            let width = slice.iter().map(|&i| enc[i].get_ids().len()).max().unwrap_or(0).max(1);
            let mut ids = Vec::with_capacity(slice.len() * width);
            let mut mask = Vec::with_capacity(slice.len() * width);
            for &i in slice {
                let e = enc[i].get_ids();
                ids.extend_from_slice(e);
                ids.extend(std::iter::repeat_n(self.pad_id, width - e.len()));
                mask.extend(std::iter::repeat_n(1u32, e.len()));
                mask.extend(std::iter::repeat_n(0u32, width - e.len()));
            }
            let ids = Tensor::from_vec(ids, (slice.len(), width), &self.device)?;
            let mask = Tensor::from_vec(mask, (slice.len(), width), &self.device)?;
            for (&i, v) in slice.iter().zip(self.pooled(&ids, &mask)?) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// The model over one padded slice: mean over the real tokens, then unit length.
    fn pooled(&self, ids: &Tensor, mask: &Tensor) -> candle_core::Result<Vec<Vec<f32>>> {
        mean_pooled(&self.model.forward(ids, mask)?, mask)
    }

    /// How the model's matrices are stored.
    pub fn precision(&self) -> Precision {
        self.precision
    }
}

impl Embedder for BertEmbedder {
    fn model(&self) -> &str {
        &self.name
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        if texts.is_empty() {
            return Ok(vec![]);
        }
        self.run(texts).map_err(|e| format!("embedding failed: {e}"))
    }
}

/// An OpenAI-compatible `/embeddings` endpoint (OpenAI, Ollama, llama.cpp's server, vLLM).
/// Vectors are normalised here, so any endpoint's output works with the index's inner product.
pub struct HttpEmbedder {
    url: String,
    model: String,
    key: Option<String>,
    dim: std::sync::OnceLock<usize>,
    client: reqwest::blocking::Client,
}

impl HttpEmbedder {
    /// `base` is the API root, e.g. `http://127.0.0.1:11434/v1`.
    pub fn new(base: &str, model: &str, key: Option<String>) -> Result<Self, String> {
        let client = reqwest::blocking::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| format!("embeddings client: {e}"))?;
        let e = HttpEmbedder {
            url: format!("{}/embeddings", base.trim_end_matches('/')),
            model: model.into(),
            key,
            dim: Default::default(),
            client,
        };
        // One call up front: learns the dimension and fails early on a wrong URL or key.
        let v = e.embed(&["dimension probe"])?;
        let _ = e.dim.set(v[0].len());
        Ok(e)
    }
}

impl Embedder for HttpEmbedder {
    fn model(&self) -> &str {
        &self.model
    }
    fn dim(&self) -> usize {
        self.dim.get().copied().unwrap_or(0)
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        if texts.is_empty() {
            return Ok(vec![]);
        }
        let mut req = self.client.post(&self.url).json(&serde_json::json!({"model": self.model, "input": texts}));
        if let Some(k) = &self.key {
            req = req.bearer_auth(k);
        }
        let resp = req.send().map_err(|e| format!("embeddings endpoint {}: {e}", self.url))?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().map_err(|e| format!("embeddings endpoint {}: not JSON: {e}", self.url))?;
        if !status.is_success() {
            return Err(format!("embeddings endpoint {} answered {status}: {}", self.url, body["error"]["message"].as_str().unwrap_or("")));
        }
        let mut rows: Vec<(usize, Vec<f32>)> = body["data"]
            .as_array()
            .ok_or_else(|| format!("embeddings endpoint {}: no `data` array", self.url))?
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let idx = d["index"].as_u64().map(|x| x as usize).unwrap_or(i);
                let v: Vec<f32> =
                    d["embedding"].as_array().map(|a| a.iter().filter_map(|x| x.as_f64()).map(|x| x as f32).collect()).unwrap_or_default();
                (idx, v)
            })
            .collect();
        rows.sort_by_key(|r| r.0);
        if rows.len() != texts.len() || rows.iter().any(|r| r.1.is_empty()) {
            return Err(format!("embeddings endpoint {}: {} vectors for {} texts", self.url, rows.len(), texts.len()));
        }
        Ok(rows
            .into_iter()
            .map(|(_, v)| {
                let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                v.into_iter().map(|x| x / n).collect()
            })
            .collect())
    }
}

/// Cosine similarity of two unit vectors.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Option<BertEmbedder> {
        let home = std::env::var("HOME").ok()?;
        let dir = default_model_dir(&Path::new(&home).join(".cache"));
        if !dir.join("model.safetensors").exists() {
            // In CI the model is always fetched (scripts/test does it): a skip there would
            // mean these checks silently did not run.
            assert!(std::env::var("CI").as_deref() != Ok("true"), "skipped under CI=true: {} is missing", dir.display());
            eprintln!("SKIPPED: {} is missing; run scripts/fetch-models", dir.display());
            return None;
        }
        Some(BertEmbedder::load(&dir).expect("the fetched model loads"))
    }

    /// A loopback server speaking the OpenAI embeddings wire format: each text's vector is
    /// its length and vowel count, so the test knows what to expect.
    fn fake_endpoint() -> String {
        use std::io::{BufRead, BufReader, Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                let mut r = BufReader::new(c.try_clone().unwrap());
                let mut len = 0usize;
                let mut auth = false;
                loop {
                    let mut line = String::new();
                    r.read_line(&mut line).unwrap();
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    auth |= lower.starts_with("authorization: bearer sk-test");
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0u8; len];
                r.read_exact(&mut body).unwrap();
                let req: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let reply = if !auth {
                    (401, serde_json::json!({"error": {"message": "bad key"}}))
                } else {
                    let data: Vec<serde_json::Value> = req["input"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .enumerate()
                        .rev()
                        .map(|(i, t)| {
                            let t = t.as_str().unwrap();
                            let vowels = t.chars().filter(|c| "aeiou".contains(*c)).count();
                            serde_json::json!({"index": i, "embedding": [t.len() as f64, vowels as f64, 0.0]})
                        })
                        .collect();
                    (200, serde_json::json!({"object": "list", "data": data, "model": req["model"]}))
                };
                let text = reply.1.to_string();
                let mut c = c;
                write!(
                    c,
                    "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    reply.0,
                    text.len()
                )
                .unwrap();
            }
        });
        format!("http://{addr}/v1")
    }

    #[test]
    fn an_openai_compatible_endpoint_embeds_in_order_and_normalised() {
        let base = fake_endpoint();
        let e = HttpEmbedder::new(&base, "nomic-embed-text", Some("sk-test".into())).unwrap();
        assert_eq!(e.dim(), 3);
        let v = e.embed(&["aaaa", "bcd"]).unwrap();
        assert!((v[0][0] - 4.0 / 32f32.sqrt()).abs() < 1e-5 && (v[0][1] - 4.0 / 32f32.sqrt()).abs() < 1e-5, "{v:?}");
        assert!((v[1][0] - 1.0).abs() < 1e-5, "the second text's vector, whatever order the server sent: {v:?}");
        let bad = HttpEmbedder::new(&base, "m", Some("wrong".into())).err().unwrap();
        assert!(bad.contains("401") && bad.contains("bad key"), "{bad}");
        let down = HttpEmbedder::new("http://127.0.0.1:1/v1", "m", None).err().unwrap();
        assert!(down.contains("embeddings endpoint http://127.0.0.1:1/v1/embeddings"), "{down}");
    }

    #[test]
    fn slices_keep_like_lengths_together_and_cover_every_text_once() {
        let lens = [10usize, 10, 11, 12, 30, 31, 200];
        let order: Vec<usize> = (0..lens.len()).collect();
        let s = slices(&order, |i| lens[i]);
        assert_eq!(s, vec![&[0, 1, 2, 3][..], &[4, 5][..], &[6][..]]);
        let many: Vec<usize> = (0..150).collect();
        let s = slices(&many, |_| 20);
        assert_eq!(s.iter().map(|x| x.len()).collect::<Vec<_>>(), vec![64, 64, 22], "equal lengths run in full slices");
        assert!(slices(&[], |_| 0).is_empty());
    }

    #[test]
    fn paraphrases_are_closer_than_unrelated_sentences() {
        let Some(m) = model() else { return };
        assert_eq!(m.dim(), 384);
        let v = m
            .embed(&[
                "The user prefers short answers without emoji.",
                "Keep replies brief and skip the emoji.",
                "The build server runs out of disk on Fridays.",
            ])
            .unwrap();
        for x in &v {
            assert!((dot(x, x) - 1.0).abs() < 1e-4, "unit length");
        }
        let close = dot(&v[0], &v[1]);
        let far = dot(&v[0], &v[2]);
        assert!(close > far + 0.2, "paraphrase {close} vs unrelated {far}");
        // Batching does not change a text's vector.
        let alone = m.embed(&["Keep replies brief and skip the emoji."]).unwrap();
        assert!(dot(&alone[0], &v[1]) > 0.9999, "padding must not leak into the mean");
        // A batch larger than one slice, lengths mixed: every vector comes back in input order.
        let texts: Vec<String> = (0..SLICE + 7)
            .map(|i| format!("Item {i}: {}", "the backup job on the build host failed again ".repeat(1 + (i * 7) % 11)))
            .collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let batch = m.embed(&refs).unwrap();
        for (i, t) in texts.iter().enumerate().step_by(5) {
            let one = m.embed(&[t.as_str()]).unwrap();
            assert!(dot(&one[0], &batch[i]) > 0.9999, "text {i} got another text's vector");
        }
    }

    /// The sentences the int8 model is held to: notes, commands, questions, code, non-English.
    pub(crate) const PRECISION_SET: &[&str] = &[
        "The user prefers short answers without emoji.",
        "Deploys happen on Tuesdays after the standup.",
        "The staging database lives on db-2 and is rebuilt every night at 03:00 UTC.",
        "How do I rotate the API key for the billing service?",
        "cargo nextest run --workspace --all-features",
        "fn main() { println!(\"hello\"); }",
        "Remember that Alice owns the payments backlog and Bob the mobile app.",
        "The backup job failed again because the disk on the build host was full.",
        "Der Server startet jeden Morgen um sechs Uhr neu.",
        "ok",
        "Summarise yesterday's failed tasks and suggest which to retry first, with reasons.",
        "A long note that goes on for a while about the design of the queue: tasks are claimed with a lease, renewed by heartbeats, and rescued by a sweep when the lease runs out, so a crash never loses work.",
    ];

    #[test]
    fn the_encoder_matches_candle_transformers_bert_and_int8_stays_within_a_cosine_of_0_99() {
        let Some(f32m) = model() else { return };
        let dir = default_model_dir(&Path::new(&std::env::var("HOME").unwrap()).join(".cache"));
        let int8 = BertEmbedder::load_with(&dir, Precision::Int8).unwrap();
        assert_eq!((int8.precision(), f32m.precision()), (Precision::Int8, Precision::F32));
        // The reference: candle-transformers' BERT on the same weights, pooled the same way.
        let config: candle_transformers::models::bert::Config =
            serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
        let vb = candle_nn::VarBuilder::from_buffered_safetensors(
            std::fs::read(dir.join("model.safetensors")).unwrap(),
            candle_core::DType::F32,
            &Device::Cpu,
        )
        .unwrap();
        let reference = candle_transformers::models::bert::BertModel::load(vb, &config).unwrap();
        let enc = f32m.tokenizer.encode_batch(PRECISION_SET.to_vec(), true).unwrap();
        let ours = f32m.embed(PRECISION_SET).unwrap();
        let quant = int8.embed(PRECISION_SET).unwrap();
        let mut worst = 1.0f32;
        for (i, e) in enc.iter().enumerate() {
            let n = e.get_ids().len();
            let ids = Tensor::from_vec(e.get_ids().to_vec(), (1, n), &Device::Cpu).unwrap();
            let mask = ids.ones_like().unwrap();
            let out = reference.forward(&ids, &ids.zeros_like().unwrap(), Some(&mask)).unwrap();
            let want = mean_pooled(&out, &mask).unwrap().remove(0);
            assert!(dot(&want, &ours[i]) > 0.99999, "f32 text {i}: {} against the reference", dot(&want, &ours[i]));
            let cos = dot(&ours[i], &quant[i]);
            // A text of a few tokens is the mean of few rows, so rounding shows most there.
            if n >= 8 {
                worst = worst.min(cos);
            }
            assert!(cos >= 0.98, "int8 text {i} ({n} tokens): cosine {cos} to f32");
        }
        assert!(worst >= 0.99, "int8 against f32: worst cosine {worst} on texts of 8 tokens or more");
    }
}
