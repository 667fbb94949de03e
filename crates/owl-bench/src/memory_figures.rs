//! Memory figures: the vector index at 100,000 items (synthetic unit vectors of the real
//! model's 384 dimensions), ingest through the whole store with precomputed vectors and with
//! real embedding, and the embedder's throughput one sentence at a time and batched.

use owl_memory::embed::{default_model_dir, BertEmbedder, Embedder, Precision};
use owl_memory::index::VectorIndex;
use owl_memory::MemoryStore as _;
use owl_memory::{Memory, MemoryConfig, NewMemory, Query};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;

const DIM: usize = 384;

/// Items per topic: synthetic vectors come in topics of this many, as real notes do.
const TOPIC: u64 = 64;

/// Item `seed`: a deterministic pseudo-random unit vector near its topic's centre.
fn vector(seed: u64) -> Vec<f32> {
    near(seed / TOPIC, seed)
}

/// A unit vector near topic `topic`'s centre, with noise drawn from `noise`.
fn near(topic: u64, noise: u64) -> Vec<f32> {
    let mut x = topic.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut y = noise.wrapping_mul(0xD1B5_4A32_D192_ED03) | 1;
    let next = |s: &mut u64| {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        (*s % 20_000) as f32 / 10_000.0 - 1.0
    };
    let v: Vec<f32> = (0..DIM).map(|_| next(&mut x) + 0.6 * next(&mut y)).collect();
    let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
    v.into_iter().map(|a| a / n).collect()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    crate::round2(crate::percentile(sorted, p))
}

pub fn run(quick: bool) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let n: usize = if quick { 10_000 } else { 100_000 };
    let queries = if quick { 100 } else { 500 };
    // Index: build, query latency and recall against exact search, save and load, memory.
    let rss0 = rss_kib();
    let vectors: Vec<Vec<f32>> = (0..n as u64).map(vector).collect();
    let t = Instant::now();
    let ix = VectorIndex::in_memory(DIM, n).expect("index");
    for (i, v) in vectors.iter().enumerate() {
        ix.add(i as i64, v).expect("add");
    }
    let build_s = t.elapsed().as_secs_f64();
    drop(ix);
    // The same vectors added at once on every core (how a rebuild and a batch add run); the
    // queries below use this index.
    let refs: Vec<(i64, &[f32])> = vectors.iter().enumerate().map(|(i, v)| (i as i64, v.as_slice())).collect();
    let t = Instant::now();
    let ix = VectorIndex::in_memory(DIM, n).expect("index");
    ix.add_many(&refs).expect("add_many");
    let parallel_build_s = t.elapsed().as_secs_f64();
    let index_bytes = ix.memory_bytes();
    let mut lat = Vec::with_capacity(queries);
    let mut found = 0usize;
    for q in 0..queries as u64 {
        // A question about a stored topic, worded differently (its own noise).
        let qv = near((q * 7919) % (n as u64 / TOPIC), 10_000_000 + q);
        let t = Instant::now();
        let approx = ix.search(&qv, 10).expect("search");
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        // Exact top 10 by brute force over the f32 vectors themselves, so a quantized index
        // is measured against the truth, not against its own rounded copies.
        let mut scored: Vec<(f32, i64)> =
            vectors.iter().enumerate().map(|(i, v)| (v.iter().zip(&qv).map(|(a, b)| a * b).sum::<f32>(), i as i64)).collect();
        scored.select_nth_unstable_by(10, |a, b| b.0.total_cmp(&a.0));
        let exact = &scored[..10];
        found += approx.iter().filter(|a| exact.iter().any(|e| e.1 == a.0)).count();
    }
    lat.sort_by(f64::total_cmp);
    let dir = crate::temp_dir();
    let path = dir.join("bench.usearch");
    // Save and load through the store's own path: a database with the vectors, then open.
    let db = owl_memory::db::MemoryDb::open(&dir.join("memory.db")).expect("db");
    let t = Instant::now();
    {
        let items: Vec<NewMemory> =
            (0..n).map(|i| NewMemory { text: format!("item {i}"), kind: "knowledge".into(), ..Default::default() }).collect();
        for (m, v) in items.iter().zip(&vectors) {
            db.insert(m, Some(("bench", v)), 0).expect("insert");
        }
    }
    let db_ingest = n as f64 / t.elapsed().as_secs_f64();
    // The same items again, 1,000 per transaction, then the index on every core: the store's
    // whole ingest of precomputed vectors.
    let db2 = owl_memory::db::MemoryDb::open(&dir.join("batched.db")).expect("db");
    let items: Vec<NewMemory> =
        (0..n).map(|i| NewMemory { text: format!("item {i}"), kind: "knowledge".into(), ..Default::default() }).collect();
    let t = Instant::now();
    let mut ids = Vec::with_capacity(n);
    for (ms, vs) in items.chunks(1000).zip(vectors.chunks(1000)) {
        let batch: Vec<(&NewMemory, Option<(&str, &[f32])>)> = ms.iter().zip(vs).map(|(m, v)| (m, Some(("bench", v.as_slice())))).collect();
        ids.extend(db2.insert_many(&batch, 0).expect("insert_many"));
    }
    let db_batched_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let ix2 = VectorIndex::in_memory(DIM, n).expect("index");
    let pairs: Vec<(i64, &[f32])> = ids.iter().zip(&vectors).map(|(id, v)| (*id, v.as_slice())).collect();
    ix2.add_many(&pairs).expect("add_many");
    let ingest_total = n as f64 / (db_batched_s + t.elapsed().as_secs_f64());
    drop(ix2);
    drop(db2);
    let t = Instant::now();
    let (built, _) = VectorIndex::open(&path, &db, "bench", DIM).expect("rebuild");
    let rebuild_s = t.elapsed().as_secs_f64();
    drop(built);
    let t = Instant::now();
    let (loaded, how) = VectorIndex::open(&path, &db, "bench", DIM).expect("load");
    let load_s = t.elapsed().as_secs_f64();
    assert_eq!(how, owl_memory::index::Opened::Loaded);
    drop(loaded);
    out.push((
        "memory_index".into(),
        json!({
            "items": n,
            "dimensions": DIM,
            // scripts/bench-chroma prints the same head: both generate the same vectors.
            "vector_12345_head": vector(12345)[..4].iter().map(|x| (*x as f64 * 1e6).round() / 1e6).collect::<Vec<_>>(),
            "build_s": crate::round2(build_s),
            "insert_per_s": (n as f64 / build_s).round(),
            "parallel_build_s": crate::round2(parallel_build_s),
            "insert_parallel_per_s": (n as f64 / parallel_build_s).round(),
            "store_ingest_batched_per_s": (n as f64 / db_batched_s).round(),
            "ingest_precomputed_total_per_s": ingest_total.round(),
            "query_p50_ms": pct(&lat, 0.5),
            "query_p99_ms": pct(&lat, 0.99),
            "recall_at_10": crate::round2(found as f64 / (queries * 10) as f64),
            "index_memory_mib": crate::round2(index_bytes as f64 / 1048576.0),
            "process_rss_growth_mib": crate::round2((rss_kib().saturating_sub(rss0)) as f64 / 1024.0),
            "store_ingest_precomputed_per_s": db_ingest.round(),
            "rebuild_from_database_s": crate::round2(rebuild_s),
            "load_s": crate::round2(load_s),
            "file_mib": crate::round2(std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) as f64 / 1048576.0),
        }),
    ));
    // The embedder, when the model is there.
    let Some(home) = std::env::var_os("HOME") else { return out };
    let model = default_model_dir(&std::path::Path::new(&home).join(".cache"));
    let Ok(e) = BertEmbedder::load(&model) else {
        out.push(("memory_embedding".into(), json!({"skipped": format!("no model at {}", model.display())})));
        return out;
    };
    let sentences: Vec<String> = (0..if quick { 128 } else { 512 })
        .map(|i| {
            format!("Note {i}: the deploy of service {} failed because the disk on host {} was full at {} o'clock.", i % 17, i % 5, i % 24)
        })
        .collect();
    let single_n = if quick { 32 } else { 128 };
    let t = Instant::now();
    for s in sentences.iter().take(single_n) {
        e.embed(&[s.as_str()]).expect("embed");
    }
    let single = single_n as f64 / t.elapsed().as_secs_f64();
    let mut by_batch = serde_json::Map::new();
    let mut best = (0usize, 0f64);
    for size in [8usize, 16, 32, 64] {
        let t = Instant::now();
        for chunk in sentences.chunks(size) {
            e.embed(&chunk.iter().map(String::as_str).collect::<Vec<_>>()).expect("embed");
        }
        let rate = sentences.len() as f64 / t.elapsed().as_secs_f64();
        by_batch.insert(size.to_string(), json!(rate.round()));
        if rate > best.1 {
            best = (size, rate);
        }
    }
    let batched = best.1;
    // The int8 encoder on the same sentences: its speed in batches of 64 and how close its
    // vectors stay to the f32 ones.
    let q = BertEmbedder::load_with(&model, Precision::Int8).expect("the int8 encoder loads");
    let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
    q.embed(&refs[..8]).expect("embed");
    let t = Instant::now();
    let qv: Vec<Vec<f32>> = refs.chunks(64).flat_map(|c| q.embed(c).expect("embed")).collect();
    let int8_rate = sentences.len() as f64 / t.elapsed().as_secs_f64();
    drop(q);
    let fv: Vec<Vec<f32>> = refs.chunks(64).flat_map(|c| e.embed(c).expect("embed")).collect();
    let cos: Vec<f64> = fv.iter().zip(&qv).map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x * y) as f64).sum()).collect();
    let cos_min = cos.iter().copied().fold(1.0, f64::min);
    let cos_mean = cos.iter().sum::<f64>() / cos.len().max(1) as f64;
    // Texts of mixed length (a title to a long section), as imports bring them.
    let mixed: Vec<String> = (0..sentences.len() / 2)
        .map(|i| {
            format!("Section {i}. {}", "The nightly backup of the build host failed because the disk was full. ".repeat(1 + (i * 7) % 12))
        })
        .collect();
    let t = Instant::now();
    for chunk in mixed.chunks(64) {
        e.embed(&chunk.iter().map(String::as_str).collect::<Vec<_>>()).expect("embed");
    }
    let mixed_rate = mixed.len() as f64 / t.elapsed().as_secs_f64();
    // Ingest through Memory with real embedding (dedup checks included).
    let mdir = crate::temp_dir();
    let loaded = Arc::new(e) as Arc<dyn Embedder>;
    let m = Memory::open(&mdir, MemoryConfig::default(), Box::new(move || Ok(loaded.clone()))).expect("memory");
    let t = Instant::now();
    for chunk in sentences.chunks(64) {
        m.add_batch(chunk.iter().map(|s| NewMemory { text: s.clone(), kind: "knowledge".into(), ..Default::default() }).collect())
            .expect("add");
    }
    let ingest = sentences.len() as f64 / t.elapsed().as_secs_f64();
    let mut qlat = Vec::new();
    for i in 0..50 {
        let t = Instant::now();
        m.search(&Query { text: format!("why did the deploy of service {i} fail?"), k: 5, ..Default::default() }).expect("search");
        qlat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    qlat.sort_by(f64::total_cmp);
    out.push((
        "memory_embedding".into(),
        json!({
            "model": "all-MiniLM-L6-v2",
            "single_sentences_per_s": single.round(),
            "batched_sentences_per_s": batched.round(),
            "batch_size": best.0,
            "batched_by_size_per_s": by_batch,
            "batched_mixed_lengths_per_s": mixed_rate.round(),
            "int8_batched_sentences_per_s": int8_rate.round(),
            "int8_cosine_to_f32_min": (cos_min * 10000.0).round() / 10000.0,
            "int8_cosine_to_f32_mean": (cos_mean * 10000.0).round() / 10000.0,
            "ingest_with_embedding_per_s": ingest.round(),
            "hybrid_search_p50_ms": pct(&qlat, 0.5),
            "hybrid_search_p99_ms": pct(&qlat, 0.99),
        }),
    ));
    out
}
