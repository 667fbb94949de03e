//! A smaller token table for models that tie it to their output layer, as gemma does.
//!
//! gemma-3-270m's Q4_K_M file keeps its 262,144 × 640 token table in Q8_0: 170 MiB of its
//! 235, and every generated token reads all of it (the table is also the output layer), so all
//! of it stays resident. Stored in Q5_0 (ggml's 5-bit blocks of 32 with one f16 scale; the
//! k-quants need rows of 256 and these rows are 640) it takes 110 MiB. [`slim_table`] writes that
//! copy once, next to the original, and the model is loaded from it: every other tensor and all
//! metadata are copied byte for byte.
//!
//! The file is read and written with plain GGUF parsing here (llama-cpp-2 does not expose
//! llama.cpp's quantizer); the Q5_0 rounding is ggml's reference `quantize_row_q5_0`.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const GGUF_MAGIC: &[u8; 4] = b"GGUF";
const TYPE_Q8_0: u32 = 8;
const TYPE_Q5_0: u32 = 6;
const TABLE: &str = "token_embd.weight";
/// The suffix of the rewritten file (before `.gguf`).
pub const SUFFIX: &str = "q5_0-table";

struct TensorInfo {
    name: String,
    dims: Vec<u64>,
    ty: u32,
    offset: u64,
    /// Where the info's type field sits in the header (it is rewritten in place).
    type_at: usize,
    offset_at: usize,
}

struct Header {
    bytes: Vec<u8>,
    tensors: Vec<TensorInfo>,
    alignment: u64,
    data_start: u64,
}

fn bad(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

/// Reads the header (magic, counts, metadata, tensor infos) keeping its raw bytes.
fn read_header(r: &mut impl Read) -> std::io::Result<Header> {
    let mut bytes = Vec::new();
    let mut take = |n: usize, bytes: &mut Vec<u8>| -> std::io::Result<Vec<u8>> {
        let mut b = vec![0u8; n];
        r.read_exact(&mut b)?;
        bytes.extend_from_slice(&b);
        Ok(b)
    };
    let u32_of = |b: Vec<u8>| u32::from_le_bytes(b.try_into().unwrap_or_default());
    let u64_of = |b: Vec<u8>| u64::from_le_bytes(b.try_into().unwrap_or_default());
    if take(4, &mut bytes)?.as_slice() != GGUF_MAGIC {
        return Err(bad("not a GGUF file"));
    }
    let version = u32_of(take(4, &mut bytes)?);
    if version < 2 {
        return Err(bad(format!("GGUF version {version} is not supported")));
    }
    let n_tensors = u64_of(take(8, &mut bytes)?);
    let n_kv = u64_of(take(8, &mut bytes)?);
    if n_tensors > 1 << 20 || n_kv > 1 << 20 {
        return Err(bad("implausible tensor or metadata count"));
    }
    let mut alignment = 32u64;
    // A string is a u64 length and its bytes.
    fn string(take: &mut dyn FnMut(usize) -> std::io::Result<Vec<u8>>) -> std::io::Result<String> {
        let n = u64::from_le_bytes(take(8)?.try_into().unwrap_or_default());
        if n > 1 << 24 {
            return Err(bad("implausible string length"));
        }
        Ok(String::from_utf8_lossy(&take(n as usize)?).into_owned())
    }
    fn scalar_len(ty: u32) -> Option<usize> {
        Some(match ty {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            10..=12 => 8,
            _ => return None,
        })
    }
    // Skips one value of type `ty`, returning it as a u64 when it is an integer scalar.
    fn value(ty: u32, take: &mut dyn FnMut(usize) -> std::io::Result<Vec<u8>>, depth: u32) -> std::io::Result<Option<u64>> {
        match ty {
            8 => string(take).map(|_| None),
            9 => {
                if depth > 2 {
                    return Err(bad("nested arrays too deep"));
                }
                let ety = u32::from_le_bytes(take(4)?.try_into().unwrap_or_default());
                let n = u64::from_le_bytes(take(8)?.try_into().unwrap_or_default());
                if n > 1 << 26 {
                    return Err(bad("implausible array length"));
                }
                match scalar_len(ety) {
                    Some(l) => {
                        take(l * n as usize)?;
                    }
                    None => {
                        for _ in 0..n {
                            value(ety, take, depth + 1)?;
                        }
                    }
                }
                Ok(None)
            }
            t => {
                let l = scalar_len(t).ok_or_else(|| bad(format!("unknown metadata type {t}")))?;
                let b = take(l)?;
                let mut v = [0u8; 8];
                v[..l].copy_from_slice(&b);
                Ok(matches!(t, 0 | 2 | 4 | 10).then_some(u64::from_le_bytes(v)))
            }
        }
    }
    {
        let mut t = |n: usize| take(n, &mut bytes);
        for _ in 0..n_kv {
            let key = string(&mut t)?;
            let ty = u32::from_le_bytes(t(4)?.try_into().unwrap_or_default());
            let v = value(ty, &mut t, 0)?;
            if key == "general.alignment" {
                alignment = v.filter(|a| a.is_power_of_two()).ok_or_else(|| bad("bad general.alignment"))?;
            }
        }
    }
    let mut tensors = Vec::with_capacity(n_tensors as usize);
    for _ in 0..n_tensors {
        let name = string(&mut |n| take(n, &mut bytes))?;
        let nd = u32_of(take(4, &mut bytes)?);
        if nd > 8 {
            return Err(bad(format!("tensor {name}: {nd} dimensions")));
        }
        let dims = (0..nd).map(|_| take(8, &mut bytes).map(u64_of)).collect::<std::io::Result<Vec<u64>>>()?;
        let type_at = bytes.len();
        let ty = u32_of(take(4, &mut bytes)?);
        let offset_at = bytes.len();
        let offset = u64_of(take(8, &mut bytes)?);
        tensors.push(TensorInfo { name, dims, ty, offset, type_at, offset_at });
    }
    let data_start = (bytes.len() as u64).div_ceil(alignment) * alignment;
    Ok(Header { bytes, tensors, alignment, data_start })
}

/// One tensor of a GGUF file: its name, ggml type and where its bytes lie in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    pub name: String,
    pub ty: u32,
    pub dims: Vec<u64>,
    /// From the start of the file.
    pub start: u64,
    /// Up to the next tensor (alignment padding included).
    pub len: u64,
}

/// The tensors of the GGUF file at `path`, in file order.
pub fn tensors(path: &Path) -> std::io::Result<Vec<Span>> {
    let mut r = BufReader::new(File::open(path)?);
    let h = read_header(&mut r)?;
    let sizes = sizes(&h, std::fs::metadata(path)?.len())?;
    let mut out: Vec<Span> = h
        .tensors
        .iter()
        .zip(sizes)
        .map(|(t, len)| Span { name: t.name.clone(), ty: t.ty, dims: t.dims.clone(), start: h.data_start + t.offset, len })
        .collect();
    out.sort_by_key(|s| s.start);
    Ok(out)
}

/// Bytes per block and values per block of the ggml types a GGUF file commonly holds.
fn block_size(ty: u32) -> Option<(u64, u64)> {
    Some(match ty {
        0 => (4, 1),
        1 | 30 => (2, 1),
        2 => (18, 32),
        3 => (20, 32),
        6 => (22, 32),
        7 => (24, 32),
        8 => (34, 32),
        9 => (36, 32),
        10 => (84, 256),
        11 => (110, 256),
        12 => (144, 256),
        13 => (176, 256),
        14 => (210, 256),
        15 => (292, 256),
        _ => return None,
    })
}

/// Each tensor's size from the offsets (each is padded to the alignment), in header order; a
/// tensor of a known type whose span is shorter than its shape needs means a cut-short file.
fn sizes(h: &Header, file_len: u64) -> std::io::Result<Vec<u64>> {
    let mut order: Vec<usize> = (0..h.tensors.len()).collect();
    order.sort_by_key(|&i| h.tensors[i].offset);
    let data_len = file_len.checked_sub(h.data_start).ok_or_else(|| bad("the file ends inside its header"))?;
    let mut sizes = vec![0u64; h.tensors.len()];
    for (k, &i) in order.iter().enumerate() {
        let end = order.get(k + 1).map(|&j| h.tensors[j].offset).unwrap_or(data_len);
        let t = &h.tensors[i];
        sizes[i] = end.checked_sub(t.offset).ok_or_else(|| bad(format!("tensor {} lies past the end of the file", t.name)))?;
        if let Some((bytes, per)) = block_size(t.ty) {
            let need = t.dims.iter().product::<u64>() / per * bytes;
            if sizes[i] < need {
                return Err(bad(format!("the file ends inside tensor {} ({} of {need} bytes)", t.name, sizes[i])));
            }
        }
    }
    Ok(sizes)
}

/// Q5_0 values of one 22-byte block.
pub fn q5_0_values(b: &[u8]) -> [f32; 32] {
    let d = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let mut v = [0f32; 32];
    for (j, x) in v.iter_mut().enumerate() {
        let lo = if j < 16 { b[6 + j] & 0x0f } else { b[6 + j - 16] >> 4 };
        let hi = ((qh >> j) & 1) as u8;
        *x = d * (f32::from(lo | (hi << 4)) - 16.0);
    }
    v
}

/// Q8_0 values of one 34-byte block.
pub fn q8_0_values(b: &[u8]) -> [f32; 32] {
    let d = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
    let mut v = [0f32; 32];
    for (x, q) in v.iter_mut().zip(&b[2..34]) {
        *x = d * f32::from(*q as i8);
    }
    v
}

fn f16_to_f32(h: u16) -> f32 {
    half::f16::from_bits(h).to_f32()
}

fn f32_to_f16(x: f32) -> u16 {
    half::f16::from_f32(x).to_bits()
}

/// One Q8_0 block (f16 scale, 32 signed bytes) re-quantized to Q5_0 (f16 scale, 4 bytes of high
/// bits, 16 bytes of low nibbles).
fn q8_0_to_q5_0(src: &[u8; 34]) -> [u8; 22] {
    let xs = q8_0_values(src);
    let (mut amax, mut max) = (0f32, 0f32);
    for &x in &xs {
        if amax < x.abs() {
            amax = x.abs();
            max = x;
        }
    }
    let d = max / -16.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut out = [0u8; 22];
    out[..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
    let mut qh = 0u32;
    for j in 0..16 {
        let xi0 = ((xs[j] * id + 16.5) as i8).min(31) as u8;
        let xi1 = ((xs[j + 16] * id + 16.5) as i8).min(31) as u8;
        out[6 + j] = (xi0 & 0x0f) | ((xi1 & 0x0f) << 4);
        qh |= ((u32::from(xi0) & 0x10) >> 4) << j;
        qh |= ((u32::from(xi1) & 0x10) >> 4) << (j + 16);
    }
    out[2..6].copy_from_slice(&qh.to_le_bytes());
    out
}

/// The file to load for `path`: itself, unless its token table is Q8_0, in which case a copy with
/// the table in Q5_0 (written once, next to it, as `NAME.q5_0-table.gguf`). Writing goes to a
/// temporary name first, so a crash or a full disk never leaves a half file under the real name.
pub fn slim_table(path: &Path) -> std::io::Result<PathBuf> {
    let mut r = BufReader::new(File::open(path)?);
    let h = read_header(&mut r)?;
    let Some(table) = h.tensors.iter().find(|t| t.name == TABLE && t.ty == TYPE_Q8_0) else {
        return Ok(path.to_path_buf());
    };
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    if stem.ends_with(SUFFIX) {
        return Ok(path.to_path_buf());
    }
    let out = path.with_file_name(format!("{stem}.{SUFFIX}.gguf"));
    let source_len = std::fs::metadata(path)?.len();
    if out.is_file() && std::fs::metadata(&out)?.modified()? >= std::fs::metadata(path)?.modified()? {
        return Ok(out);
    }
    let elems: u64 = table.dims.iter().product();
    if !elems.is_multiple_of(32) {
        return Ok(path.to_path_buf());
    }
    let sizes = sizes(&h, source_len)?;
    let mut order: Vec<usize> = (0..h.tensors.len()).collect();
    order.sort_by_key(|&i| h.tensors[i].offset);
    let table_i = h.tensors.iter().position(|t| std::ptr::eq(t, table)).unwrap_or(0);
    let blocks = elems / 32;
    if sizes[table_i] < blocks * 34 {
        return Err(bad("the token table is shorter than its shape"));
    }
    let new_table = (blocks * 22).div_ceil(h.alignment) * h.alignment;
    let mut header = h.bytes.clone();
    let mut shift = 0u64;
    for &i in &order {
        let t = &h.tensors[i];
        header[t.offset_at..t.offset_at + 8].copy_from_slice(&(t.offset - shift).to_le_bytes());
        if i == table_i {
            header[t.type_at..t.type_at + 4].copy_from_slice(&TYPE_Q5_0.to_le_bytes());
            shift = sizes[i] - new_table;
        }
    }
    remove_stale_partials(path, &stem);
    let tmp = path.with_file_name(format!(".{stem}.{SUFFIX}.{}.partial", std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        w.write_all(&header)?;
        w.write_all(&vec![0u8; (h.data_start - header.len() as u64) as usize])?;
        for &i in &order {
            r.seek(SeekFrom::Start(h.data_start + h.tensors[i].offset))?;
            if i == table_i {
                let mut block = [0u8; 34];
                for _ in 0..blocks {
                    r.read_exact(&mut block)?;
                    w.write_all(&q8_0_to_q5_0(&block))?;
                }
                w.write_all(&vec![0u8; (new_table - blocks * 22) as usize])?;
            } else {
                let n = std::io::copy(&mut (&mut r).take(sizes[i]), &mut w)?;
                if n != sizes[i] {
                    return Err(bad("the file ends inside a tensor"));
                }
            }
        }
        w.into_inner().map_err(|e| e.into_error())?.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &out)?;
    Ok(out)
}

/// Removes what an interrupted writer left (writing takes seconds; an hour-old one is dead).
fn remove_stale_partials(path: &Path, stem: &str) {
    let Some(dir) = path.parent() else { return };
    let Ok(entries) = std::fs::read_dir(if dir.as_os_str().is_empty() { Path::new(".") } else { dir }) else { return };
    let prefix = format!(".{stem}.{SUFFIX}.");
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let old = e.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).is_some_and(|a| a.as_secs() > 3600);
        if name.starts_with(&prefix) && name.ends_with(".partial") && old {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_keeps_its_values_within_a_fifth_bit_step() {
        let mut src = [0u8; 34];
        src[..2].copy_from_slice(&f32_to_f16(0.01).to_le_bytes());
        for (i, q) in src[2..].iter_mut().enumerate() {
            *q = ((i as i32 * 8 - 127) as i8) as u8;
        }
        let q5 = q8_0_to_q5_0(&src);
        let d = f16_to_f32(u16::from_le_bytes([q5[0], q5[1]]));
        for (j, v) in q5_0_values(&q5).into_iter().enumerate() {
            let x = 0.01 * f32::from((j as i32 * 8 - 127) as i8);
            assert!((v - x).abs() <= d.abs() * 0.5 + 1e-6, "{j}: {v} against {x}");
        }
    }
}
