//! Sentence embeddings computed in-process: a sentence-transformers BERT model (all-MiniLM-L6-v2
//! by default) run with candle, mean-pooled and L2-normalised, so a dot product is the cosine.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use std::path::{Path, PathBuf};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

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
    model: BertModel,
    tokenizer: Tokenizer,
    dim: usize,
    device: Device,
}

/// Longest input, in tokens; longer texts are cut (MiniLM was trained on 256).
const MAX_TOKENS: usize = 256;

impl BertEmbedder {
    pub fn load(dir: &Path) -> Result<Self, String> {
        let read = |f: &str| std::fs::read(dir.join(f)).map_err(|e| format!("cannot read {}: {e}", dir.join(f).display()));
        let config: Config = serde_json::from_slice(&read("config.json")?).map_err(|e| format!("{}/config.json: {e}", dir.display()))?;
        let dim = serde_json::from_slice::<serde_json::Value>(&read("config.json")?)
            .ok()
            .and_then(|v| v["hidden_size"].as_u64())
            .ok_or_else(|| format!("{}/config.json has no hidden_size", dir.display()))? as usize;
        let device = Device::Cpu;
        let vb = VarBuilder::from_buffered_safetensors(read("model.safetensors")?, DType::F32, &device)
            .map_err(|e| format!("{}/model.safetensors: {e}", dir.display()))?;
        let model = BertModel::load(vb, &config).map_err(|e| format!("{}: not a BERT model: {e}", dir.display()))?;
        let mut tokenizer =
            Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| format!("{}/tokenizer.json: {e}", dir.display()))?;
        tokenizer.with_padding(Some(PaddingParams { strategy: PaddingStrategy::BatchLongest, ..Default::default() }));
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: MAX_TOKENS, ..Default::default() }))
            .map_err(|e| format!("tokenizer: {e}"))?;
        let name = dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "bert".into());
        Ok(BertEmbedder { name, model, tokenizer, dim, device })
    }

    fn run(&self, texts: &[&str]) -> candle_core::Result<Vec<Vec<f32>>> {
        let enc = self.tokenizer.encode_batch(texts.to_vec(), true).map_err(candle_core::Error::wrap)?;
        let ids = enc.iter().map(|e| Tensor::new(e.get_ids(), &self.device)).collect::<candle_core::Result<Vec<_>>>()?;
        let masks = enc.iter().map(|e| Tensor::new(e.get_attention_mask(), &self.device)).collect::<candle_core::Result<Vec<_>>>()?;
        let ids = Tensor::stack(&ids, 0)?;
        let mask = Tensor::stack(&masks, 0)?;
        let types = ids.zeros_like()?;
        let out = self.model.forward(&ids, &types, Some(&mask))?;
        // Mean over the real tokens, then unit length.
        let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = out.broadcast_mul(&m)?.sum(1)?;
        let counts = m.sum(1)?.clamp(1e-9, f64::MAX)?;
        let mean = summed.broadcast_div(&counts)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
        mean.broadcast_div(&norm)?.to_vec2::<f32>()
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
            eprintln!("SKIPPED: {} is missing; run scripts/fetch-models", dir.display());
            return None;
        }
        Some(BertEmbedder::load(&dir).expect("the fetched model loads"))
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
    }
}
