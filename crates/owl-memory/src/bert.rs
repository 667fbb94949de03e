//! A BERT encoder (the sentence-transformers family: all-MiniLM-L6-v2 and its kin) on candle,
//! with its matrix weights kept either in f32 or quantized to int8 (ggml's Q8_0: blocks of 32
//! weights sharing one scale), multiplied by candle's quantized kernels. The word-embedding
//! table (about half of MiniLM's weights) is only ever gathered from, a few hundred rows per
//! batch, so it is not held at all: its rows are read from the file when a batch needs them
//! (see [`WordTable`]).
//!
//! The weights are read from `model.safetensors` one tensor at a time, so loading never holds
//! the whole file and its converted copy at once, and the f32 matrices of an int8 model are
//! dropped as soon as they are quantized.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Result, Tensor, D};
use serde::Deserialize;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// How the encoder's matrices are stored and multiplied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    F32,
    /// Q8_0 matrices (about a quarter of the memory). The activations are quantized in blocks
    /// of 256 by candle's int8 dot-product kernels, so a vector stays within a cosine of about
    /// 0.998 of f32 on sentences, less on texts of a few tokens (0.989 on a three-token text;
    /// both measured when the word table was still held in f16, it is now read exact).
    Int8,
}

#[derive(Deserialize)]
pub(crate) struct Config {
    pub hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    #[serde(default)]
    hidden_act: Option<String>,
}

fn default_eps() -> f64 {
    1e-12
}

/// The tensors of a safetensors file, read on demand.
struct SafeTensorsFile {
    file: std::fs::File,
    data_start: u64,
    file_len: u64,
    entries: HashMap<String, (DType, Vec<usize>, u64, u64)>,
}

#[derive(Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: (u64, u64),
}

impl SafeTensorsFile {
    fn open(path: &Path) -> Result<Self> {
        let mut file = std::fs::File::open(path)?;
        let mut len = [0u8; 8];
        file.read_exact(&mut len)?;
        let len = u64::from_le_bytes(len);
        if len > 100 << 20 {
            candle_core::bail!("the header claims {len} bytes: not a safetensors file");
        }
        let mut header = vec![0u8; len as usize];
        file.read_exact(&mut header)?;
        let raw: HashMap<String, serde_json::Value> = serde_json::from_slice(&header).map_err(candle_core::Error::wrap)?;
        let mut entries = HashMap::new();
        for (name, v) in raw {
            if name == "__metadata__" {
                continue;
            }
            let e: Entry = serde_json::from_value(v).map_err(|e| candle_core::Error::Msg(format!("tensor {name}: {e}")))?;
            let dtype = match e.dtype.as_str() {
                "F32" => DType::F32,
                "F16" => DType::F16,
                "BF16" => DType::BF16,
                "I64" => DType::I64,
                other => {
                    // Only the float tensors are ever read; others are listed but skipped.
                    tracing::debug!(tensor = %name, dtype = other, "tensor type not read");
                    continue;
                }
            };
            entries.insert(name, (dtype, e.shape, e.data_offsets.0, e.data_offsets.1));
        }
        let file_len = file.metadata()?.len();
        Ok(SafeTensorsFile { file, data_start: 8 + len, file_len, entries })
    }

    fn has(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// Where a tensor of `shape` lies: its type and its byte range in the file, which is
    /// checked against the file's length (a header may claim anything).
    fn locate(&self, name: &str, shape: &[usize]) -> Result<(DType, u64, u64)> {
        let (dtype, dims, start, end) =
            self.entries.get(name).cloned().ok_or_else(|| candle_core::Error::Msg(format!("the model has no tensor `{name}`")))?;
        if dims != shape {
            candle_core::bail!("tensor `{name}` is {dims:?}, expected {shape:?}");
        }
        let want = shape.iter().try_fold(dtype.size_in_bytes() as u64, |n, &d| n.checked_mul(d as u64));
        if want.is_none() || end.checked_sub(start) != want {
            candle_core::bail!("tensor `{name}` takes {} bytes in the file, not what its shape {shape:?} needs", end.saturating_sub(start));
        }
        match (self.data_start.checked_add(start), self.data_start.checked_add(end)) {
            (Some(start), Some(end)) if end <= self.file_len => Ok((dtype, start, end)),
            _ => candle_core::bail!(
                "the model file is {} bytes, shorter than its tensor `{name}` needs: fetch it again (scripts/fetch-models)",
                self.file_len
            ),
        }
    }

    /// Reads one tensor as f32.
    fn get(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let (dtype, start, end) = self.locate(name, shape)?;
        let mut bytes = vec![0u8; (end - start) as usize];
        self.file.seek(SeekFrom::Start(start))?;
        self.file.read_exact(&mut bytes)?;
        Tensor::from_raw_buffer(&bytes, dtype, shape, &Device::Cpu)?.to_dtype(DType::F32)
    }
}

enum Weight {
    F32(Tensor),
    Q8(QMatMul),
}

struct Linear {
    weight: Weight,
    bias: Tensor,
    /// Zero columns appended to the input (see `load`).
    pad: usize,
}

impl Linear {
    fn load(st: &mut SafeTensorsFile, prefix: &str, out: usize, inp: usize, precision: Precision) -> Result<Self> {
        Self::fused(st, &[prefix], out, inp, precision)
    }

    /// One layer computing several of the same input at once (outputs side by side).
    fn fused(st: &mut SafeTensorsFile, prefixes: &[&str], out: usize, inp: usize, precision: Precision) -> Result<Self> {
        let mut ws = Vec::new();
        let mut bs = Vec::new();
        for prefix in prefixes {
            ws.push(st.get(&format!("{prefix}.weight"), &[out, inp])?);
            bs.push(st.get(&format!("{prefix}.bias"), &[out])?);
        }
        let (w, bias) = if ws.len() == 1 { (ws.remove(0), bs.remove(0)) } else { (Tensor::cat(&ws, 0)?, Tensor::cat(&bs, 0)?) };
        let out = out * prefixes.len();
        let (weight, pad) = match precision {
            Precision::F32 => (Weight::F32(w.t()?), 0),
            Precision::Int8 => {
                // candle's int8 kernels that use the CPU's int8 dot-product instructions
                // want the inner dimension in whole blocks of 256: zero columns pad it.
                let pad = inp.next_multiple_of(256) - inp;
                let w = if pad > 0 { Tensor::cat(&[&w, &Tensor::zeros((out, pad), DType::F32, &Device::Cpu)?], 1)? } else { w };
                (Weight::Q8(QMatMul::from_qtensor(QTensor::quantize(&w, GgmlDType::Q8_0)?)?), pad)
            }
        };
        Ok(Linear { weight, bias, pad })
    }

    /// `x` is (rows, in); the result (rows, out).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = match &self.weight {
            Weight::F32(wt) => x.matmul(wt)?,
            Weight::Q8(q) if self.pad > 0 => {
                let rows = x.dim(0)?;
                q.forward(&Tensor::cat(&[x, &Tensor::zeros((rows, self.pad), DType::F32, x.device())?], 1)?)?
            }
            Weight::Q8(q) => q.forward(x)?,
        };
        y.broadcast_add(&self.bias)
    }
}

struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl LayerNorm {
    fn load(st: &mut SafeTensorsFile, prefix: &str, dim: usize, eps: f64) -> Result<Self> {
        Ok(LayerNorm {
            weight: st.get(&format!("{prefix}.weight"), &[dim])?,
            bias: st.get(&format!("{prefix}.bias"), &[dim])?,
            eps: eps as f32,
        })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

/// The word-embedding table, left in the model file: [`WordTable::rows`] reads the rows a
/// batch needs (1.5 KiB each for MiniLM), which the kernel serves from its page cache. A
/// process that embeds holds 45 MiB less (23 MiB less than an f16 copy would), for about a
/// millisecond of reads per batch of a thousand tokens.
struct WordTable {
    /// Its own handle: the rows stay readable if the file is replaced on disk.
    file: std::fs::File,
    dtype: DType,
    /// The byte offset of row 0 in the file.
    start: u64,
    vocab: usize,
    hidden: usize,
}

impl WordTable {
    fn open(st: &SafeTensorsFile, name: &str, vocab: usize, hidden: usize) -> Result<WordTable> {
        // `locate` checks the table against the file's length, so no batch finds it cut short.
        let (dtype, start, _) = st.locate(name, &[vocab, hidden])?;
        let file = st.file.try_clone()?;
        Ok(WordTable { file, dtype, start, vocab, hidden })
    }

    /// The rows for `ids`, as f32 (ids.len(), hidden).
    fn rows(&self, ids: &[u32]) -> Result<Tensor> {
        use std::os::unix::fs::FileExt;
        let row = self.hidden * self.dtype.size_in_bytes();
        let mut bytes = vec![0u8; ids.len() * row];
        for (&id, out) in ids.iter().zip(bytes.chunks_exact_mut(row)) {
            if id as usize >= self.vocab {
                candle_core::bail!("token id {id} is outside the model's vocabulary of {}", self.vocab);
            }
            self.file.read_exact_at(out, self.start + id as u64 * row as u64)?;
        }
        Tensor::from_raw_buffer(&bytes, self.dtype, &[ids.len(), self.hidden], &Device::Cpu)?.to_dtype(DType::F32)
    }
}

struct Layer {
    /// Query, key and value in one product: (rows, 3 × hidden).
    qkv: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    out_norm: LayerNorm,
}

pub(crate) struct Bert {
    words: WordTable,
    positions: Tensor,
    token_type: Tensor,
    embed_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    hidden: usize,
}

impl Bert {
    pub fn load(config: &Config, weights: &Path, precision: Precision) -> Result<Bert> {
        if config.hidden_act.as_deref().is_some_and(|a| a != "gelu") {
            candle_core::bail!("hidden_act {:?} is not supported (only gelu)", config.hidden_act);
        }
        let h = config.hidden_size;
        if h == 0 || config.num_attention_heads == 0 || !h.is_multiple_of(config.num_attention_heads) {
            candle_core::bail!("hidden_size {h} must be a positive multiple of num_attention_heads {}", config.num_attention_heads);
        }
        let mut st = SafeTensorsFile::open(weights)?;
        let p = if st.has("bert.embeddings.word_embeddings.weight") { "bert." } else { "" };
        let shape_of = |st: &SafeTensorsFile, name: &str| st.entries.get(name).map(|e| e.1.clone());
        let vocab = shape_of(&st, &format!("{p}embeddings.word_embeddings.weight"))
            .and_then(|s| s.first().copied())
            .ok_or_else(|| candle_core::Error::Msg("the model has no word embeddings".into()))?;
        let max_pos = shape_of(&st, &format!("{p}embeddings.position_embeddings.weight")).and_then(|s| s.first().copied()).unwrap_or(512);
        let words = WordTable::open(&st, &format!("{p}embeddings.word_embeddings.weight"), vocab, h)?;
        let positions = st.get(&format!("{p}embeddings.position_embeddings.weight"), &[max_pos, h])?;
        let types = shape_of(&st, &format!("{p}embeddings.token_type_embeddings.weight")).and_then(|s| s.first().copied()).unwrap_or(2);
        let token_type = st.get(&format!("{p}embeddings.token_type_embeddings.weight"), &[types, h])?.get(0)?;
        let embed_norm = LayerNorm::load(&mut st, &format!("{p}embeddings.LayerNorm"), h, config.layer_norm_eps)?;
        let inter = shape_of(&st, &format!("{p}encoder.layer.0.intermediate.dense.weight"))
            .and_then(|s| s.first().copied())
            .ok_or_else(|| candle_core::Error::Msg("the model has no encoder layers".into()))?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let l = format!("{p}encoder.layer.{i}");
            let eps = config.layer_norm_eps;
            layers.push(Layer {
                qkv: Linear::fused(
                    &mut st,
                    &[&format!("{l}.attention.self.query"), &format!("{l}.attention.self.key"), &format!("{l}.attention.self.value")],
                    h,
                    h,
                    precision,
                )?,
                attn_out: Linear::load(&mut st, &format!("{l}.attention.output.dense"), h, h, precision)?,
                attn_norm: LayerNorm::load(&mut st, &format!("{l}.attention.output.LayerNorm"), h, eps)?,
                intermediate: Linear::load(&mut st, &format!("{l}.intermediate.dense"), inter, h, precision)?,
                output: Linear::load(&mut st, &format!("{l}.output.dense"), h, inter, precision)?,
                out_norm: LayerNorm::load(&mut st, &format!("{l}.output.LayerNorm"), h, eps)?,
            });
        }
        Ok(Bert { words, positions, token_type, embed_norm, layers, heads: config.num_attention_heads, hidden: h })
    }

    /// The last hidden states, (batch, seq, hidden), for `ids` (batch, seq) with `mask` 1 on
    /// real tokens and 0 on padding. Every input has token type 0.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, s) = ids.dims2()?;
        if s > self.positions.dim(0)? {
            candle_core::bail!("{s} tokens exceed the model's {} positions", self.positions.dim(0)?);
        }
        let (h, nh) = (self.hidden, self.heads);
        let d = h / nh;
        let words = self.words.rows(&ids.flatten_all()?.to_vec1::<u32>()?)?.reshape((b, s, h))?;
        let x = words.broadcast_add(&self.positions.narrow(0, 0, s)?)?.broadcast_add(&self.token_type)?;
        let mut x = self.embed_norm.forward(&x.reshape((b * s, h))?)?;
        // 0 where attended, the most negative float where padded: (batch, 1, 1, seq).
        let bias = ((mask.to_dtype(DType::F32)? - 1.0)? * f64::from(f32::MAX))?.reshape((b, 1, 1, s))?;
        let scale = 1.0 / (d as f64).sqrt();
        let split = |t: Tensor| t.reshape((b, s, nh, d))?.transpose(1, 2)?.contiguous();
        for l in &self.layers {
            let qkv = l.qkv.forward(&x)?;
            let q = split((qkv.narrow(1, 0, h)? * scale)?)?;
            let k = split(qkv.narrow(1, h, h)?)?;
            let v = split(qkv.narrow(1, 2 * h, h)?)?;
            let scores = q.matmul(&k.t()?)?.broadcast_add(&bias)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let ctx = probs.matmul(&v)?.transpose(1, 2)?.contiguous()?.reshape((b * s, h))?;
            let attn = l.attn_norm.forward(&(l.attn_out.forward(&ctx)? + &x)?)?;
            let inner = l.intermediate.forward(&attn)?.gelu_erf()?;
            x = l.out_norm.forward(&(l.output.forward(&inner)? + &attn)?)?;
        }
        x.reshape((b, s, h))
    }
}

/// Mean of `hidden` (batch, seq, dim) over the positions where `mask` is 1, then unit length.
pub(crate) fn mean_pooled(hidden: &Tensor, mask: &Tensor) -> Result<Vec<Vec<f32>>> {
    let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    let summed = hidden.broadcast_mul(&m)?.sum(1)?;
    let counts = m.sum(1)?.clamp(1e-9, f64::MAX)?;
    let mean = summed.broadcast_div(&counts)?;
    let norm = mean.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
    mean.broadcast_div(&norm)?.to_vec2::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A safetensors file holding one F32 tensor `words` of `shape`, its values 0, 1, 2, ...
    /// `cut` bytes are left off its end.
    fn write(path: &Path, shape: [usize; 2], cut: usize) {
        let n = shape[0] * shape[1];
        let header = serde_json::json!({"words": {"dtype": "F32", "shape": shape, "data_offsets": [0, n * 4]}}).to_string();
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(header.as_bytes());
        for i in 0..n {
            bytes.extend((i as f32).to_le_bytes());
        }
        bytes.truncate(bytes.len() - cut);
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn the_word_table_reads_the_rows_asked_for_and_refuses_ids_and_files_it_cannot_serve() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        write(&path, [4, 3], 0);
        let st = SafeTensorsFile::open(&path).unwrap();
        let table = WordTable::open(&st, "words", 4, 3).unwrap();
        // Repeated ids and the last row, in the order asked.
        let rows = table.rows(&[3, 0, 3, 1]).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(rows, vec![vec![9.0, 10.0, 11.0], vec![0.0, 1.0, 2.0], vec![9.0, 10.0, 11.0], vec![3.0, 4.0, 5.0]]);
        let err = table.rows(&[1, 4]).unwrap_err().to_string();
        assert!(err.contains("token id 4 is outside the model's vocabulary of 4"), "{err}");
        // A shape the header does not give is refused, and so is one the caller got wrong.
        assert!(WordTable::open(&st, "words", 4, 4).err().unwrap().to_string().contains("expected [4, 4]"));
        assert!(WordTable::open(&st, "nothing", 4, 3).err().unwrap().to_string().contains("no tensor `nothing`"));

        // A file cut short is refused when it is opened, not on the batch that reaches its end.
        write(&path, [4, 3], 2);
        let st = SafeTensorsFile::open(&path).unwrap();
        let err = WordTable::open(&st, "words", 4, 3).err().expect("a short file is refused").to_string();
        assert!(err.contains("shorter than its tensor `words` needs"), "{err}");
    }

    #[test]
    fn a_header_whose_sizes_overflow_is_refused_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let header = serde_json::json!({"words": {"dtype": "F32", "shape": [u64::MAX / 2, 4], "data_offsets": [0, u64::MAX]}}).to_string();
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(header.as_bytes());
        std::fs::write(&path, bytes).unwrap();
        let mut st = SafeTensorsFile::open(&path).unwrap();
        let shape = [(u64::MAX / 2) as usize, 4];
        assert!(st.locate("words", &shape).is_err());
        assert!(st.get("words", &shape).is_err());
    }
}
