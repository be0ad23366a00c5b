"""Retrieval-metric speed and memory: tfhash against the field's per-query loop and faster peers, in the same run.

Synthetic codes shaped like the papers' benchmarks:
- cifar10: 10,000 queries × 50,000 database, 64 bits, 10 classes (codes = class prototype with random bit flips);
- nuswide: 2,100 queries × 193,000 database, 64 bits, 21 labels, multi-hot (codes = sign of the sum of the
  labels' prototypes plus noise).

Implementations (all start from the same ±1 float32 codes and labels; the numpy peers block their queries):
- loop: the per-query loop of the field's released code (Hamming distance by a product, full argsort, cumulative
  precision over the relevant ranks); timed once, as it is slow;
- numpy-top-k (mAP@k, stable): packed XOR + popcount distances per query block, the k-th distance per row (per-row
  np.bincount: 4× faster here than the issue's np.partition), a stable radix sort of the candidates up to it;
- numpy-radix (mAP@all, stable): uint8 distances and a stable (radix) argsort per block;
- faiss-heap / faiss-counting (mAP@k, stable): faiss.IndexBinaryFlat top-k search (``use_heap`` True / False),
  AP from the returned ids. faiss keeps the k smallest (distance, id) pairs, which is the stable ranking;
- numpy-buckets (mAP@all, ties average): per-(query, distance) counts by np.bincount and the closed form;
- hamming (floor): the Hamming matrix alone, faiss.hammings per query block into one reused buffer;
  hamming-fresh: the same into a new buffer per block (as numpy code and TF ops allocate their outputs; on this
  VM, first-touch page faults make that markedly slower).
Every peer's mAP is asserted equal to tfhash's to 1e-6 (the loop's is not: it ranks ties with an unstable argsort).

Times: one process per (dataset, metric) runs every implementation once to warm it, then round-robin `repeats`
times (medians reported), so that the ratios tfhash / peer come from the same minutes of a busy machine. Peak
extra memory (resident set growth during the first call, sampled every 2 ms) and the first call's time are
measured apart, one fresh process per implementation.

    python benchmarks/retrieval_metrics.py                 # both datasets, all metrics (~20 min on 2 busy cores)
    python benchmarks/retrieval_metrics.py --dataset cifar10 --repeats 5
    python benchmarks/retrieval_metrics.py --quick         # smaller shapes, one round: a smoke test (~5 min)
    python benchmarks/retrieval_metrics.py --settle        # each timed call after an untimed one of itself
"""

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import threading
import time

import numpy as np

DATASETS = {
    "cifar10": dict(num_queries=10_000, num_db=50_000, bits=64, classes=10, multi_label=False),
    "nuswide": dict(num_queries=2_100, num_db=193_000, bits=64, classes=21, multi_label=True),
}
QUICK = {"cifar10": dict(num_queries=1_000, num_db=10_000), "nuswide": dict(num_queries=300, num_db=20_000)}
# name, top_k, ties, peers, target speed-up over the loop on 2 CPU cores
CASES = {
    "all-average": ("mAP@all, ties=average", None, "average", ["numpy-buckets"], 8.0),
    "1000-stable": (
        "mAP@1000, ties=stable", 1000, "stable", ["numpy-top-k", "faiss-heap", "faiss-counting"], 5.0
    ),
    "all-stable": ("mAP@all, ties=stable", None, "stable", ["numpy-radix"], 1.5),
}
FLOORS = ["hamming", "hamming-fresh"]
# The targets: tfhash at least as fast as these peers, and within 3× of the Hamming matrix alone.
PEER_TARGETS = {"numpy-top-k": 1.0, "faiss-heap": 1.0, "faiss-counting": 1.0, "numpy-radix": 1.0}
FLOOR_TARGET = {"all-average": 3.0}
MEMORY_TARGET = 1.5 * 2**30


def synthetic(dataset, quick=False, seed=0):
    """(query codes, db codes, query labels, db labels) as float32 ±1 codes and int labels, deterministic."""
    spec = DATASETS[dataset] | (QUICK[dataset] if quick else {})
    rng = np.random.default_rng(seed)
    total = spec["num_queries"] + spec["num_db"]
    prototypes = rng.choice([-1.0, 1.0], size=(spec["classes"], spec["bits"]))
    if spec["multi_label"]:
        # Skewed label frequencies and 1–3 labels per image, as in NUS-WIDE's 21 most frequent concepts.
        frequency = 1.0 / np.arange(1, spec["classes"] + 1) ** 0.7
        labels = np.zeros((total, spec["classes"]), np.int64)
        for row, count in enumerate(rng.integers(1, 4, total)):
            labels[row, rng.choice(spec["classes"], count, replace=False, p=frequency / frequency.sum())] = 1
        codes = np.sign(labels @ prototypes + rng.normal(0.0, 1.2, (total, spec["bits"])))
        codes[codes == 0] = 1
    else:
        labels = rng.integers(0, spec["classes"], total)
        codes = prototypes[labels] * np.where(rng.random((total, spec["bits"])) < 0.3, -1.0, 1.0)
    codes = codes.astype(np.float32)
    q = spec["num_queries"]
    return codes[:q], codes[q:], labels[:q], labels[q:]


def field_loop(query_codes, db_codes, query_labels, db_labels, top_k=None):
    """The per-query loop of the field's released evaluation scripts (without their top_k = -1 slicing bug)."""
    bits = query_codes.shape[1]
    average_precisions = []
    for q in range(len(query_codes)):
        if query_labels.ndim == 1:
            relevant = (db_labels == query_labels[q]).astype(np.float64)
        else:
            relevant = (db_labels @ query_labels[q] > 0).astype(np.float64)
        hamming = 0.5 * (bits - db_codes @ query_codes[q])
        ranked = relevant[np.argsort(hamming)][: top_k or len(relevant)]
        hits = ranked.sum()
        if hits == 0:
            average_precisions.append(0.0)
            continue
        positions = np.flatnonzero(ranked) + 1.0
        average_precisions.append(np.mean(np.arange(1, hits + 1) / positions))
    return float(np.mean(average_precisions))


# ------------------------------------------------------------------------------------------------ numpy peers


def _words(bits):
    """Bool matrix (n, K) → uint64 words (n, ⌈K/64⌉)."""
    packed = np.packbits(bits, axis=1)
    packed = np.pad(packed, [(0, 0), (0, -packed.shape[1] % 8)])
    return np.ascontiguousarray(packed).view(np.uint64)


class _Packed:
    """Codes and labels packed once per call: XOR + popcount distances and label overlaps by query block."""

    def __init__(self, query_codes, db_codes, query_labels, db_labels):
        self.query, self.database = _words(query_codes > 0), _words(db_codes > 0)
        self.multi_label = query_labels.ndim == 2
        if self.multi_label:
            self.query_labels, self.db_labels = _words(query_labels > 0), _words(db_labels > 0)
        else:
            self.query_labels, self.db_labels = query_labels, db_labels
        self.num_bits, self.num_db = query_codes.shape[1], len(db_codes)
        # (block × n_db) matrices of 2²⁰ elements: numpy's fastest block here (2²⁰ was within 10 % of the best of
        # 2¹⁸–2²⁴ for every peer; 2²⁴ was up to 1.5× slower).
        self.block = max(1, 2**20 // self.num_db)

    def blocks(self):
        for start in range(0, len(self.query), self.block):
            yield slice(start, start + self.block)

    def distances(self, rows):
        """uint8 (b, n_db)."""
        distance = np.bitwise_count(self.query[rows, None, 0] ^ self.database[None, :, 0])
        for word in range(1, self.query.shape[1]):
            distance += np.bitwise_count(self.query[rows, None, word] ^ self.database[None, :, word])
        return distance

    def relevance(self, query_rows, db_items=slice(None)):
        """Shared label of query_rows × db_items, or of the pairs (query_rows[i], db_items[i]) if both are arrays."""
        pairs = isinstance(query_rows, np.ndarray) and isinstance(db_items, np.ndarray)
        query = self.query_labels[query_rows] if pairs else self.query_labels[query_rows][:, None]
        database = self.db_labels[db_items]
        if not self.multi_label:
            return query == database
        return ((query & database) != 0).any(axis=-1)


def _sparse_average_precision(relevant_flat, rank, num_rows, row_length):
    """AP per row from the flat (row-major) indices of relevant items in ranked rows, and their 1-based ranks."""
    row = relevant_flat // row_length
    found = np.bincount(row, minlength=num_rows)
    hits = np.arange(len(row)) - (np.cumsum(found) - found)[row] + 1
    precision_sum = np.bincount(row, hits / rank, minlength=num_rows)
    return np.divide(precision_sum, found, out=np.zeros_like(precision_sum), where=found > 0)


def numpy_top_k(data, top_k):
    """Stable mAP@top_k: the k-th distance per row (from per-row bincounts, 4× faster here than np.partition),
    then a stable radix sort of only the candidates at or below it."""
    packed = _Packed(*data)
    bins = packed.num_bits + 1
    average_precisions = []
    for rows in packed.blocks():
        distance = packed.distances(rows)
        counts = np.stack([np.bincount(row, minlength=bins) for row in distance])
        cut = np.argmax(np.cumsum(counts, axis=1) >= top_k, axis=1)
        flat = np.flatnonzero(distance <= cut[:, None])  # row-major: database order within a row
        row, item = np.divmod(flat, packed.num_db)
        key = row * bins + distance.ravel()[flat]
        order = np.argsort(key.astype(np.uint16) if len(distance) * bins <= 2**16 else key, kind="stable")
        row, item = row[order], item[order]
        per_row = np.bincount(row, minlength=len(distance))
        rank = np.arange(len(row)) - (np.cumsum(per_row) - per_row)[row] + 1
        keep = rank <= top_k
        row, item, rank = row[keep], item[keep], rank[keep]
        relevant = packed.relevance(row + rows.start, item)
        ranked_flat = row * top_k + rank - 1  # kept items: the top k of each row, in order
        average_precisions.append(
            _sparse_average_precision(ranked_flat[relevant], rank[relevant], len(distance), top_k)
        )
    return float(np.concatenate(average_precisions).mean())


def numpy_radix(data):
    """Stable mAP@all: a stable (radix) argsort of uint8 distances per query block."""
    packed = _Packed(*data)
    average_precisions = []
    for rows in packed.blocks():
        order = np.argsort(packed.distances(rows), axis=1, kind="stable")
        relevant = np.flatnonzero(np.take_along_axis(packed.relevance(rows), order, axis=1))
        rank = relevant % packed.num_db + 1
        average_precisions.append(_sparse_average_precision(relevant, rank, len(order), packed.num_db))
    return float(np.concatenate(average_precisions).mean())


def numpy_buckets(data):
    """Tie-averaged mAP@all: per-(query, distance) counts, then McSherry & Najork's closed form (as tfhash)."""
    packed = _Packed(*data)
    bins = packed.num_bits + 1
    harmonic = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, packed.num_db + 1))])
    average_precisions = []
    for rows in packed.blocks():
        distance = packed.distances(rows)
        flat = (np.arange(len(distance))[:, None] * bins + distance).ravel()
        size = len(distance) * bins
        counts = np.bincount(flat, minlength=size).reshape(-1, bins).astype(np.float64)
        relevant = np.bincount(flat, packed.relevance(rows).ravel(), minlength=size).reshape(-1, bins)
        before = np.cumsum(counts, axis=1) - counts
        relevant_before = np.cumsum(relevant, axis=1) - relevant
        slope = np.divide(relevant - 1.0, counts - 1.0, out=np.zeros_like(counts), where=counts > 1)
        offset = relevant_before + 1.0 - (before + 1.0) * slope
        span = harmonic[(before + counts).astype(np.int64)] - harmonic[before.astype(np.int64)]
        share = np.divide(relevant, counts, out=np.zeros_like(counts), where=counts > 0)
        precision_sum = (share * (offset * span + counts * slope)).sum(axis=1)
        found = relevant.sum(axis=1)
        average_precisions.append(np.divide(precision_sum, found, out=np.zeros_like(precision_sum), where=found > 0))
    return float(np.concatenate(average_precisions).mean())


def faiss_top_k(data, top_k, use_heap):
    """Stable mAP@top_k from faiss.IndexBinaryFlat's top-k ids (ties by id, as the stable rule)."""
    import faiss

    query_codes, db_codes, query_labels, db_labels = data
    index = faiss.IndexBinaryFlat(8 * -(-query_codes.shape[1] // 8))
    index.use_heap = use_heap
    index.add(np.packbits(db_codes > 0, axis=1))
    _, ids = index.search(np.packbits(query_codes > 0, axis=1), top_k)
    if query_labels.ndim == 1:
        relevant = db_labels[ids] == query_labels[:, None]
    else:
        relevant = ((_words(db_labels > 0)[ids] & _words(query_labels > 0)[:, None]) != 0).any(axis=-1)
    hits = np.cumsum(relevant, axis=1)
    precision_sum = np.where(relevant, hits / np.arange(1, top_k + 1), 0.0).sum(axis=1)
    found = hits[:, -1]
    return float(np.divide(precision_sum, found, out=np.zeros_like(precision_sum), where=found > 0).mean())


def hamming_floor(data, fresh):
    """The Hamming matrix alone, by faiss.hammings per query block of 2²⁴ elements, into one reused buffer or
    (`fresh`) a new one per block."""
    import faiss

    query_codes, db_codes = data[0], data[1]
    query, database = np.packbits(query_codes > 0, axis=1), np.packbits(db_codes > 0, axis=1)
    block = max(1, 2**24 // len(database))
    out = np.empty((block, len(database)), np.int32)
    for start in range(0, len(query), block):
        rows = np.ascontiguousarray(query[start : start + block])
        if fresh:
            out = np.empty((block, len(database)), np.int32)
        faiss.hammings(
            faiss.swig_ptr(rows), faiss.swig_ptr(database), len(rows), len(database), query.shape[1],
            faiss.swig_ptr(out),
        )


def implementation(name, data, top_k, ties):
    """A zero-argument callable computing the metric (a float; None for the floor)."""
    if name == "tfhash":
        from tfhash.metrics import mean_average_precision

        return lambda: float(mean_average_precision(*data, top_k=top_k, ties=ties))
    peers = {
        "loop": lambda: field_loop(*data, top_k=top_k),
        "numpy-top-k": lambda: numpy_top_k(data, top_k),
        "numpy-radix": lambda: numpy_radix(data),
        "numpy-buckets": lambda: numpy_buckets(data),
        "faiss-heap": lambda: faiss_top_k(data, top_k, use_heap=True),
        "faiss-counting": lambda: faiss_top_k(data, top_k, use_heap=False),
        "hamming": lambda: hamming_floor(data, fresh=False),
        "hamming-fresh": lambda: hamming_floor(data, fresh=True),
    }
    return peers[name]


# ---------------------------------------------------------------------------------------------- measurement


def _resident_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _with_peak_memory(fn):
    """Runs fn(); returns (result, seconds, peak extra resident bytes during the call)."""
    baseline, peak, done = _resident_bytes(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _resident_bytes())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    return result, seconds, max(peak[0], _resident_bytes()) - baseline


def first_call(dataset, quick, case, name):
    """The first call of one implementation in a fresh process: value, seconds, peak extra bytes."""
    _, top_k, ties, _, _ = CASES[case]
    value, seconds, extra = _with_peak_memory(implementation(name, synthetic(dataset, quick), top_k, ties))
    return dict(value=value, seconds=seconds, extra_bytes=extra)


def warm_times(dataset, quick, case, names, repeats, settle=False):
    """Each implementation once (warm-up), then `repeats` round-robin rounds: {name: (value, [seconds])}.

    With `settle`, each timed call follows an untimed call of the same implementation: a call right after another
    runtime's (TF's thread pools, faiss's OpenMP, numpy) measured 5–25 % slower here (benchmarks/README.md).
    """
    _, top_k, ties, _, _ = CASES[case]
    data = synthetic(dataset, quick)
    calls = {name: implementation(name, data, top_k, ties) for name in names}
    values = {name: call() for name, call in calls.items()}
    seconds = {name: [] for name in names}
    for _ in range(repeats):
        for name, call in calls.items():
            if settle:
                call()
            start = time.perf_counter()
            call()
            seconds[name].append(time.perf_counter() - start)
    return {name: dict(value=values[name], seconds=seconds[name]) for name in names}


def _subprocess(*arguments):
    command = [sys.executable, __file__, "--measure", json.dumps(arguments)]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode:
        raise RuntimeError(f"measurement {arguments} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _device():
    import tensorflow as tf

    return "GPU" if tf.config.list_physical_devices("GPU") else f"CPU ({os.cpu_count()} cores)"


def _installed_version(distribution):
    """The installed version of a distribution, None where it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _environment(arguments):
    """Where and with what the run measured: recorded beside its results."""
    import keras
    import tensorflow as tf

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "")
    return {
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/retrieval_metrics.py " + " ".join(arguments),
        "device": _device(),
        "cpu": cpu or platform.machine(),
        "load_average_at_start": os.getloadavg()[0],
        "versions": {
            "python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": np.__version__, "faiss": _installed_version("faiss-cpu"),
        },
    }


def run_case(dataset, quick, case, repeats, settle=False):
    """Every measurement of one (dataset, metric); prints its rows and returns them."""
    name, top_k, ties, peers, loop_target = CASES[case]
    loop = _subprocess("first_call", dataset, quick, case, "loop")
    firsts = {impl: _subprocess("first_call", dataset, quick, case, impl) for impl in ["tfhash", *peers]}
    warm = _subprocess("warm_times", dataset, quick, case, ["tfhash", *peers, *FLOORS], repeats, settle)
    median = {impl: float(np.median(result["seconds"])) for impl, result in warm.items()}
    ours = warm["tfhash"]["value"]
    for impl in peers:
        for value in (warm[impl]["value"], firsts[impl]["value"]):
            assert abs(value - ours) <= 1e-6, f"{dataset} {name}: {impl} gives {value}, tfhash {ours}"

    def row(impl, seconds, first, value, extra, target=None):
        ratio = median["tfhash"] / seconds if impl != "tfhash" else None
        ratio_text = f"{ratio:8.2f}" if ratio is not None else f"{'':8}"
        target_text = f"≤ {target:.1f}" if target is not None else ""
        verdict = "" if target is None else ("  met" if ratio <= target else "  NOT MET")
        value_text = f"{value:9.6f} {abs(value - ours):8.1e}" if value is not None else f"{'':9} {'':8}"
        extra_text = f"{extra / 2**30:7.2f} GB" if extra is not None else f"{'':10}"
        first_text = f"{first:7.2f}" if first is not None else f"{'':7}"
        print(f"  {impl:16} {seconds:8.3f} {first_text} {ratio_text} {target_text:7} {value_text} {extra_text}"
              f"{verdict}")

    extra = firsts["tfhash"]["extra_bytes"]
    print(f"{name}  (tfhash peak extra {extra / 2**30:.2f} GB, target ≤ {MEMORY_TARGET / 2**30:.1f} GB: "
          f"{'met' if extra <= MEMORY_TARGET else 'NOT MET'})")
    row("tfhash", median["tfhash"], firsts["tfhash"]["seconds"], ours, firsts["tfhash"]["extra_bytes"])
    for impl in peers:
        first = firsts[impl]
        row(impl, median[impl], first["seconds"], first["value"], first["extra_bytes"], PEER_TARGETS.get(impl))
    for floor in FLOORS:
        row(floor, median[floor], None, None, None, FLOOR_TARGET.get(case))
    loop_ratio = loop["seconds"] / median["tfhash"]
    print(f"  {'loop (once)':16} {loop['seconds']:8.3f} {'':7} {'':8} {'':7} {loop['value']:9.6f} "
          f"{abs(loop['value'] - ours):8.1e} {loop['extra_bytes'] / 2**30:7.2f} GB  (tfhash {loop_ratio:.1f}× faster; "
          f"target ≥ {loop_target:.1f}×{'' if loop_ratio >= loop_target else ', NOT MET'})")
    return dict(dataset=dataset, metric=name, loop=loop, first_calls=firsts, warm=warm, medians=median)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(DATASETS), action="append")
    parser.add_argument("--case", choices=list(CASES), action="append")
    parser.add_argument("--repeats", type=int, default=3, help="warm round-robin rounds (medians reported)")
    parser.add_argument("--quick", action="store_true", help="smaller shapes, one round: a smoke test")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--settle", action="store_true",
                        help="time each call after an untimed call of the same implementation (twice as long)")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        kind, *arguments = json.loads(args.measure)
        print(json.dumps({"first_call": first_call, "warm_times": warm_times}[kind](*arguments)))
        return

    repeats = 1 if args.quick else args.repeats
    environment, results = _environment(sys.argv[1:]), []
    print(f"tfhash on {environment['device']}; load average at start {environment['load_average_at_start']:.2f}")
    for dataset in args.dataset or sorted(DATASETS):
        spec = DATASETS[dataset] | (QUICK[dataset] if args.quick else {})
        print(f"\n{dataset}: {spec['num_queries']:,} queries × {spec['num_db']:,} database, {spec['bits']} bits, "
              f"{spec['classes']} {'labels (multi-hot)' if spec['multi_label'] else 'classes'}; median of {repeats} "
              "warm round(s)")
        print(f"  {'implementation':16} {'warm s':>8} {'first s':>7} {'tfh/peer':>8} {'target':7} {'mAP':>9} "
              f"{'|Δ|':>8} {'peak extra':>10}")
        for case in args.case or CASES:
            results.append(run_case(dataset, args.quick, case, repeats, args.settle))
    print(f"\nload average at end {os.getloadavg()[0]:.2f}; tfh/peer = tfhash's median warm time / the peer's "
          f"(same process, round-robin{', each after itself' if args.settle else ''}); the loop ranks ties with "
          "numpy's unstable argsort, hence its |Δ|.")
    if args.json:
        from tfhash._atomic import write_json

        write_json(args.json, environment | {"load_average_at_end": os.getloadavg()[0], "cases": results})


if __name__ == "__main__":
    main()
