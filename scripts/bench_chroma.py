"""Chroma beside owl: ingest and query the same 100,000 clustered 384-d unit vectors that
`owl-bench memory` uses (the same generator; only the rounding of the normalisation may
differ), in the same way, and print JSON.

Run through scripts/bench-chroma, which makes a virtual environment with chromadb.
"""
import json
import sys
import tempfile
import time

import numpy as np
import chromadb

DIM = 384
TOPIC = 64
M64 = (1 << 64) - 1


def near(topics, noises):
    """owl-bench's `near` for many vectors at once: xorshift64 streams, one per vector."""
    x = (np.array([(int(t) * 0x9E3779B97F4A7C15) & M64 for t in topics], dtype=np.uint64)) | np.uint64(1)
    y = (np.array([(int(s) * 0xD1B54A32D192ED03) & M64 for s in noises], dtype=np.uint64)) | np.uint64(1)
    out = np.empty((len(topics), DIM), dtype=np.float32)

    def nxt(s):
        s ^= s << np.uint64(13)
        s ^= s >> np.uint64(7)
        s ^= s << np.uint64(17)
        return (s % np.uint64(20000)).astype(np.float32) / np.float32(10000.0) - np.float32(1.0)

    for d in range(DIM):
        a = nxt(x)
        b = nxt(y)
        out[:, d] = a + np.float32(0.6) * b
    return out / np.linalg.norm(out, axis=1, keepdims=True).astype(np.float32)


def main():
    quick = "--quick" in sys.argv
    n = 10_000 if quick else 100_000
    queries = 100 if quick else 500
    ids = np.arange(n)
    vectors = near([i // TOPIC for i in ids], list(ids))
    client = chromadb.PersistentClient(path=tempfile.mkdtemp(prefix="owl-chroma-"))
    try:
        col = client.create_collection("bench", configuration={"hnsw": {"space": "ip"}})
    except Exception:
        col = client.create_collection("bench", metadata={"hnsw:space": "ip"})
    batch = min(5000, client.get_max_batch_size())
    t = time.perf_counter()
    for i in range(0, n, batch):
        col.add(ids=[str(j) for j in range(i, min(n, i + batch))], embeddings=vectors[i : i + batch])
    build = time.perf_counter() - t
    lat = []
    found = 0
    qv = near([(q * 7919) % (n // TOPIC) for q in range(queries)], [10_000_000 + q for q in range(queries)])
    for q in range(queries):
        t = time.perf_counter()
        r = col.query(query_embeddings=qv[q : q + 1], n_results=10, include=[])
        lat.append((time.perf_counter() - t) * 1000)
        exact = set(np.argsort(-(vectors @ qv[q]))[:10].tolist())
        found += sum(1 for i in r["ids"][0] if int(i) in exact)
    lat.sort()
    pct = lambda p: round(lat[min(len(lat) - 1, int(p * len(lat)))], 2)
    print(json.dumps({
        "chroma": {
            "version": chromadb.__version__,
            "items": n,
            "vector_12345_head": [round(float(x), 6) for x in near([12345 // TOPIC], [12345])[0][:4]],
            "build_s": round(build, 2),
            "insert_per_s": round(n / build),
            "query_p50_ms": pct(0.5),
            "query_p99_ms": pct(0.99),
            "recall_at_10": round(found / (queries * 10), 3),
        }
    }))


if __name__ == "__main__":
    main()
