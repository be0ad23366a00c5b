"""Ranking metrics for binary codes: mAP, precision@N and precision–recall curves, as TF ops.

Hamming distances are integers in [0, K], so the database falls into at most K + 1 groups of tied items per
query. Two tie rules are offered:

- ``ties="average"``: the expected value of the metric over all orders of the tied items (uniformly random,
  independently per group). It is computed in closed form from per-distance counts (McSherry & Najork, "Computing
  information retrieval performance measures efficiently in the presence of tied scores", ECIR 2008), without
  sorting, and does not depend on the order of the database. Where a top-k cut falls inside a tied group, AP@k's
  denominator (relevant items within the top k) depends on the order too; the expectation is then taken exactly,
  over the hypergeometric number of relevant items that land inside the cut.
- ``ties="stable"``: equal distances are ranked by database index, as a stable sort and faiss's binary indexes do.

Conventions (both rules): an item is relevant to a query when they share at least one label; AP@k is the mean of
the precision at the rank of each relevant item within the top k, divided by the number of relevant items within
the top k (``top_k=None`` means the whole database); a query with no relevant item there contributes 0 to the
mean. Unlike the field's released scripts, nothing depends on an unstable argsort, and ``top_k=None`` keeps the
last database item.

Computation and memory: codes are validated and packed 64 bits to an int64 word in numpy, and queries are
processed in blocks of ``query_block_size`` rows (by default ⌊2²² / n_db⌋ on a CPU, ⌊2²⁰ / n_db⌋ for the stable
ranking of the whole database, ⌊2²⁴ / n_db⌋ for a top k of 128 or more and on a GPU, at least 1), all in one graph
loop (`_blockwise`) that runs a few blocks at once. Per block, one fused XLA pass (XOR, population count, label
overlap) writes each pair's histogram bin, and one bincount gives the per-distance counts, from which
``ties="average"`` follows in closed form; ``ties="stable"`` ranks by a counting sort (`_stable_summary`, its
per-item arithmetic one more XLA pass), of every item for ``top_k=None`` and of the candidates up to the top-k cut
distance otherwise. For a top k of 128 or more, the candidates come without a histogram of every pair: a strided
sample of the database bounds each query's cut distance (`_Retrieval.cut_bounds`, its own graph loop before the
blocks), a fused pass marks the pairs within the bound as bits, and a second one lists them and computes the keys
of only those (`_stable_top_sampled`). Block memory is reused from block to block; peak extra memory is the
outputs' and a few blocks' (0.11–0.23 GB on CIFAR-10- and NUS-WIDE-sized problems,
benchmarks/retrieval_metrics.py). Each function is traced once per code length and label form, whatever the sizes,
without AutoGraph. XLA compiles a fused pass once per shape (0.1–0.3 s each), and each compilation holds memory
for the life of the process, so the shapes are few: every block has the same rows, the database is padded to
one of 64 lengths an octave (its padding masked out or subtracted) and a lone block's queries to one of 16, and a
block's candidates and relevant items to one of 8 or 4 lengths an octave.
"""

import functools
import math
import os

import numpy as np
import tensorflow as tf

from tfhash._validation import check_int
from tfhash.metrics._inputs import TIE_RULES, as_label_pair, as_word_pair, check_ties
from tfhash.metrics.hamming import packed_words, word_distances, word_hamming

# Pairs per block on a CPU (see `_blockwise`), measured on the CIFAR-10 and NUS-WIDE shapes, 2 cores: 2²² where
# one fused pass reduces a block's pairs to an int32 key each (the histograms of mAP@all with averaged ties; 2²⁰ →
# 2²²: 10–20 % faster, 2²³: 1.3× slower); 2²⁴ where it reduces them to a bit each (the sampled top k's marks:
# 2²² → 2²⁴, 0.87–0.94× and 0.94–0.96× the time of the top 1000; 2²⁵, 0.93× and 1.0×), as larger blocks amortise
# each block's few dozen TF ops; 2²⁰ where every pair goes through several TF ops (the stable ranking of the whole
# database: 2²² was 33 % slower; the sample's histogram of the top k's cut bound: 1.3×). A GPU's allocator keeps
# its memory and each block costs kernel launches, so there blocks are larger (not measured: no GPU has been
# lent).
_ON_GPU = bool(tf.config.list_physical_devices("GPU"))
_BLOCK_ELEMENTS = 2**24 if _ON_GPU else 2**22
_MARKED_BLOCK_ELEMENTS = 2**24
_PAIRWISE_BLOCK_ELEMENTS = 2**24 if _ON_GPU else 2**20
_WORDS = tf.TensorSpec([None, None], tf.int64)
_MATRIX = tf.TensorSpec([None, None], tf.int32)
_VECTOR = tf.TensorSpec([None], tf.int32)
_SCALAR = tf.TensorSpec([], tf.int32)
_TRACED = {}
# Query blocks the graph loop may evaluate at once (see `_blockwise`).
_PARALLEL_BLOCKS = min(os.cpu_count() or 1, 16)


def _traced_once(graph, specs, jit_compile=False, **static):
    """`graph` as a tf.function of tensors shaped as `specs` (sizes left unknown), one per value of its Python
    arguments `static`: calls of every size share one trace, so there is no retracing (XLA still compiles a new
    shape once, without tracing). Without AutoGraph: the graphs write their control flow as TF ops, and converting
    them took most of a first call's time (2.5 of 3.6 s, the NUS-WIDE shape's top 1000)."""
    key = (graph, specs, jit_compile, tuple(sorted(static.items())))
    if key not in _TRACED:
        _TRACED[key] = tf.function(
            functools.partial(graph, **static), input_signature=specs, jit_compile=jit_compile, autograph=False
        )
    return _TRACED[key]


def _share_a_label(query_labels, db_labels, multi_hot):
    """Whether paired (broadcast) labels share one, bool: equal class ids, or a common bit in packed multi-hot
    words (last axis)."""
    if multi_hot:
        return tf.reduce_any(tf.bitwise.bitwise_and(query_labels, db_labels) != 0, axis=-1)
    return tf.equal(query_labels, db_labels)


def _relevance(query_labels, db_labels):
    """Relevant pairs, bool (b, n_db), of every query and database item."""
    return _share_a_label(query_labels[:, None], db_labels[None, :], multi_hot=query_labels.shape.rank == 2)


def _key(rows, distances, relevant, num_bins):
    """A pair's histogram bin, int32: 2(K + 1)·row + 2·distance + relevant, the layout every ranking step reads
    (key >> 1 is the (row, distance) group)."""
    return rows * (2 * num_bins) + 2 * distances + tf.cast(relevant, tf.int32)


def _pair_keys(query_words, db_words, query_labels, db_labels, num_db, num_bins, with_distances, mask_padding):
    """Histogram bin of every (query, database item) pair, int32 (b, n): 2(K + 1)·row + 2·distance + relevant;
    with `mask_padding`, the `_padded_rows` of the database past its `num_db` items get keys b·2(K + 1), past
    every bin, and distance K + 1, past every distance.

    One fused XLA pass over packed codes, writing only int32 (and, with `with_distances`, the distances too, for
    the stable ranking). The key is 2-D: a flat output makes XLA's loop several times slower, and TF reshapes it
    for free. The mask costs this pass 1.12× its time (NUS-WIDE shape), so the histograms count the padding and
    subtract it (`_Retrieval.padding_counts`).
    """
    distances = word_hamming(query_words, db_words)
    num_rows = tf.shape(distances)[0]
    keys = _key(tf.range(num_rows)[:, None], distances, _relevance(query_labels, db_labels), num_bins)
    if mask_padding:
        real = tf.range(tf.shape(db_words)[0])[None, :] < num_db
        keys, distances = tf.where(real, keys, num_rows * 2 * num_bins), tf.where(real, distances, num_bins)
    return (keys, distances) if with_distances else keys


def _interleaved(db_words):
    """The database's words (n_db, w) padded to 64·m items and interleaved by eights, (64·m, w): row j·8m + t
    holds item 8t + j, so that `_marked_words` reads each of a byte's 8 bit positions as one contiguous run
    (m = ⌈n_db / 64⌉)."""
    padded = tf.pad(db_words, [[0, -db_words.shape[0] % 64], [0, 0]])
    columns = tf.transpose(tf.reshape(padded, [-1, 8, db_words.shape[1]]), [1, 0, 2])
    return tf.reshape(columns, [-1, db_words.shape[1]])


def _marked_words(query_words, db_columns, num_db, bounds):
    """Pairs at distance at most their row's bound, as bits: int64 (b, m), bit j of word c marking database item
    64c + j; each word's marks before it, int32 (b·m,) flat; and their total.

    One fused XLA pass over the `_interleaved` database, its first `num_db` items real: 8 unrolled contiguous
    comparisons OR-ed into each byte, 8 bytes then read as a word. As fast as writing a bool a pair, at an eighth
    of the output, and as fast as 64 comparisons unrolled into each word, which took 1.3 s to compile (this 0.25 s);
    a reduction over the 64 bit positions ran 3× slower. The distances are compared as int64, the population
    counts' width (as int32, the pass took 1.2× as long: the vectorised loop narrowed every count first), and the
    padding items are unmarked once per byte, not per pair.
    """
    num_rows, num_bytes = tf.shape(query_words)[0], tf.shape(db_columns)[0] // 8
    columns = tf.reshape(db_columns, [8, num_bytes, -1])
    bounds = tf.cast(bounds, tf.int64)[:, None]
    marks = tf.zeros([num_rows, num_bytes], tf.uint8)
    for bit in range(8):
        within = word_hamming(query_words, columns[bit], tf.int64) <= bounds
        marks = tf.bitwise.bitwise_or(marks, tf.bitwise.left_shift(tf.cast(within, tf.uint8), bit))
    # Items 8k + j ≥ num_db are padding: byte k keeps its low min(num_db - 8k, 8) bits (fused into the pass; a mask
    # per word after the bitcast cost a pass of its own).
    real_items = tf.clip_by_value(num_db - 8 * tf.range(num_bytes), 0, 8)  # per byte
    marks = tf.bitwise.bitwise_and(marks, tf.cast(tf.bitwise.left_shift(1, real_items) - 1, tf.uint8)[None, :])
    # Little-endian (every platform TF builds for): byte k holds bits 8k to 8k + 7.
    marks = tf.bitcast(tf.reshape(marks, [num_rows, -1, 8]), tf.int64)
    counts = tf.reshape(tf.cast(tf.raw_ops.PopulationCount(x=marks), tf.int32), [-1])
    return marks, tf.cumsum(counts, exclusive=True), tf.reduce_sum(counts)


def _set_bit(words, index):
    """Position of each word's set bit number `index` (0-based, from the low end), int32: a branchless binary
    search over the population counts of the low half, quarter, ..., of the remaining window."""
    position = tf.zeros_like(index)
    for width in (32, 16, 8, 4, 2, 1):
        window = tf.bitwise.bitwise_and(tf.bitwise.right_shift(words, tf.cast(position, tf.int64)), (1 << width) - 1)
        below = tf.cast(tf.raw_ops.PopulationCount(x=window), tf.int32)
        past = index >= below
        index = tf.where(past, index - below, index)
        position = tf.where(past, position + width, position)
    return position


def _keys_of_marked(slots, num_marks, marks, starts, query_words, db_words, query_labels, db_labels, num_bins):
    """Pair keys (`_pair_keys`) and distances, int32 (p,) each, of the `num_marks` pairs marked in `marks`
    (`_marked_words`), one per slot, in row-major pair order, then padding: keys b·2(K + 1) (past every bin) and
    distances K + 1 (past every distance).

    Slot s holds the mark of word w = slot_words[s] whose rank among that word's marks is s - starts[w] (starts:
    the marks before each word, flat), w being the number of words that start at or before s, less one.
    `slots`: an empty int32 tensor (p, 0), whose shape sets the slots (a static shape for XLA, padded past the
    marks) without allocating them. One fused XLA pass: each slot's word and bit, then gathers of the pair's
    words and labels.
    """
    num_rows, num_words = tf.shape(marks)[0], tf.shape(marks)[1]
    slot = tf.range(tf.shape(slots)[0])
    word_starts = tf.tensor_scatter_nd_add(tf.zeros_like(slot), starts[:, None], tf.ones_like(starts))
    slot_words = tf.cumsum(word_starts) - 1
    bit = _set_bit(tf.gather(tf.reshape(marks, [-1]), slot_words), slot - tf.gather(starts, slot_words))
    rows = slot_words // num_words
    items = tf.minimum(64 * (slot_words - rows * num_words) + bit, tf.shape(db_words)[0] - 1)
    distances = word_distances(tf.gather(query_words, rows), tf.gather(db_words, items))
    relevant = _share_a_label(
        tf.gather(query_labels, rows), tf.gather(db_labels, items), multi_hot=query_labels.shape.rank == 2
    )
    marked = slot < num_marks
    return (
        tf.where(marked, _key(rows, distances, relevant, num_bins), num_rows * 2 * num_bins),
        tf.where(marked, distances, num_bins),
    )


def _relevant_counts(query_labels, db_labels):
    """Relevant database items per query, int32 (b,), reduced inside one fused XLA pass."""
    return tf.reduce_sum(tf.cast(_relevance(query_labels, db_labels), tf.int32), axis=1)


def _compiled(graph, query_labels, num_bins=None, **static):
    """The XLA-compiled `graph` for this label form (class ids or packed words; None where it takes no labels),
    traced once."""
    labels = _WORDS if query_labels is not None and query_labels.shape.rank == 2 else _VECTOR
    specs = {
        _pair_keys: (_WORDS, _WORDS, labels, labels, _SCALAR),
        _marked_words: (_WORDS, _WORDS, _SCALAR, _VECTOR),
        _distance_keys: (_WORDS, _WORDS, _SCALAR),
        _keys_of_marked: (_MATRIX, _SCALAR, _WORDS, _VECTOR, _WORDS, _WORDS, labels, labels),
        _relevant_counts: (labels, labels),
    }[graph]
    if num_bins is not None:
        static["num_bins"] = num_bins
    return _traced_once(graph, specs, jit_compile=True, **static)


def _blockwise(
    query_words, db_words, query_labels, db_labels, num_db, row_inputs, db_inputs, block, ranks, summary, num_bins,
    dtypes,
):
    """summary(block's query words, db words, block's query labels, db labels, num_db, ranks, num_bins, *block's
    rows of row_inputs, *db_inputs) of each block of `block` queries, each output's rows concatenated over the
    blocks; `num_db` is the number of real database items, the rest `_padded_rows`.

    One graph loop over blocks of a few million pairs (see `_BLOCK_ELEMENTS`): the allocator reuses their
    memory, where a block per eager call of 2²⁵ pairs measured 1.5–2.7× slower (the fresh pages of every large
    buffer cost as much as the work). Up to `_PARALLEL_BLOCKS` blocks run at once: the bincount's sibling
    kernels (dynamic_partition, where) are single-threaded. Every block has the same rows: the last one ends at
    the last query, overlapping the one before, whose rows it drops, so that XLA compiles each pass for one
    block shape (the CIFAR-10 shape's last block of 40 rows, against 83, cost 0.5 s of compilation).
    """
    num_queries = tf.shape(query_words)[0]
    steps = (num_queries + block - 1) // block

    def body(step, *arrays):
        start = tf.maximum(tf.minimum(step * block, num_queries - block), 0)
        stop = tf.minimum(start + block, num_queries)
        repeated = step * block - start  # rows the block before has
        outputs = summary(
            query_words[start:stop],
            db_words,
            query_labels[start:stop],
            db_labels,
            num_db,
            ranks,
            num_bins,
            *(values[start:stop] for values in row_inputs),
            *db_inputs,
        )
        return (step + 1,) + tuple(array.write(step, output[repeated:]) for array, output in zip(arrays, outputs))

    arrays = tuple(tf.TensorArray(dtype, size=steps, infer_shape=False) for dtype in dtypes)
    _, *arrays = tf.while_loop(
        lambda step, *_: step < steps, body, (tf.constant(0), *arrays), parallel_iterations=_PARALLEL_BLOCKS
    )
    return tuple(array.concat() for array in arrays)


def _bin_counts(keys, num_bins, rows):
    """Items and relevant items per (query, distance), int32 (rows, K + 1) each: one bincount of the pair keys
    (keys past the last bin, `_keys_of_marked`'s padding, count nowhere, as tf.math.bincount's maxlength)."""
    # The raw op skips tf.math.bincount's extra pass for the maximum.
    counts = tf.raw_ops.Bincount(
        arr=tf.reshape(keys, [-1]), size=rows * 2 * num_bins, weights=tf.zeros([0], tf.int32)
    )
    counts = tf.reshape(counts, [rows, num_bins, 2])
    return counts[..., 0] + counts[..., 1], counts[..., 1]


def _histograms(query_words, db_words, query_labels, db_labels, num_db, ranks, num_bins):
    """Summary of `_blockwise`: per-distance counts of all items, the database's padding included (a mask would
    cost the pass 1.12× its time; `_Retrieval.histograms` subtracts it), and of the relevant ones."""
    del ranks  # the counts need no rank cut-off
    keys = _compiled(_pair_keys, query_labels, num_bins, with_distances=False, mask_padding=False)(
        query_words, db_words, query_labels, db_labels, num_db
    )
    return _bin_counts(keys, num_bins, tf.shape(keys)[0])


def _relevant_totals(query_words, db_words, query_labels, db_labels, num_db, ranks, num_bins):
    """Summary of `_blockwise`: the relevant items in the whole database, per query (its padding shares no
    label)."""
    del query_words, db_words, num_db, ranks, num_bins
    return (_compiled(_relevant_counts, query_labels)(query_labels, db_labels),)


def _group_offsets(values):
    """Per (row, distance) group, row-major as the pair keys' halves (key >> 1 = row·(K + 1) + distance): the
    row's count before the group, minus the group's start in the distance-major concatenation of all groups,
    plus 1. Adding an item's place in that concatenation gives its 1-based place in its row."""
    # A group's start: every group at a smaller distance, then the same distance's groups of earlier rows.
    distance_start = tf.cumsum(tf.reduce_sum(values, axis=0), exclusive=True)
    group_start = distance_start[None, :] + tf.cumsum(values, axis=0, exclusive=True)
    return tf.reshape(tf.cumsum(values, axis=1, exclusive=True) - group_start + 1, [-1])


def _low_bits_set(value):
    """`value` (int32, non-negative) with every bit below its highest set bit set: 2^m - 1 for 2^(m-1) ≤ value."""
    for shift in (1, 2, 4, 8, 16):
        value = tf.bitwise.bitwise_or(value, tf.bitwise.right_shift(value, shift))
    return value


def _count_below(sorted_values, values):
    """For each of `values`, how many of `sorted_values` (ascending) are smaller: searchsorted(side="left") as a
    branchless binary search, one vectorised step per bit of the length. (A comparison with every cut-off costs
    as many passes as there are cut-offs: a 100-point precision curve was 3× slower.)"""
    size = tf.shape(sorted_values)[0]
    step = tf.bitwise.right_shift(_low_bits_set(size) + 1, 1)  # the largest power of two at most `size`

    def halve(step, below):
        probe = below + step
        smaller = (probe <= size) & (tf.gather(sorted_values, tf.minimum(probe, size) - 1) < values)
        return tf.bitwise.right_shift(step, 1), tf.where(smaller, probe, below)

    _, below = tf.while_loop(lambda step, _: step > 0, halve, (step, tf.zeros_like(values)))
    return below


def _relevant_ranks_summary(relevant_keys, position, num_relevant, count_offsets, relevant_offsets, ranks, num_bins):
    """AP@ranks[-1] and the relevant items within each rank of `ranks`, from the relevant items' keys and places
    in the (distance, row, database index) order of `_stable_summary`, padded past `num_relevant`.

    One fused XLA pass, compiled once per padded length: as a dozen separate TF ops these steps took about 45 ns
    per relevant item (profiled on the CIFAR-10 shape, top 1000), fused about 10 ns.
    """
    rows = tf.shape(count_offsets)[0] // num_bins
    index = tf.range(tf.shape(relevant_keys)[0])
    valid = index < num_relevant
    group = tf.bitwise.right_shift(relevant_keys, 1)
    row = group // num_bins
    rank = position + tf.gather(count_offsets, group)
    hits = index + tf.gather(relevant_offsets, group)
    within = valid & (rank <= ranks[-1])
    precision = tf.where(within, tf.cast(hits, tf.float64) / tf.cast(rank, tf.float64), 0.0)
    precision_sum = tf.math.unsorted_segment_sum(precision, row, rows)
    # Relevant items within each cut-off: count each at the first cut-off it falls within (the extra last
    # bin holds those past all cut-offs and the padding), then accumulate.
    num_ranks = tf.shape(ranks)[0]
    first_cutoff = _count_below(ranks, rank)
    per_cutoff = tf.math.unsorted_segment_sum(
        tf.ones_like(row), tf.where(valid, row * (num_ranks + 1) + first_cutoff, rows * (num_ranks + 1)),
        rows * (num_ranks + 1) + 1,
    )
    hits_at = tf.cast(tf.cumsum(tf.reshape(per_cutoff[:-1], [rows, num_ranks + 1])[:, :-1], axis=1), tf.float64)
    return tf.math.divide_no_nan(precision_sum, hits_at[:, -1]), hits_at


def _padded_length(length, steps_per_octave):
    """`length` rounded up to at least 1024, and to a multiple of 2^m / `steps_per_octave` (a power of two) for
    2^m ≤ length < 2^(m+1): padding variable lengths to it bounds XLA's compilations to `steps_per_octave` per
    octave, and the padding to 1 / `steps_per_octave` of the work."""
    length = tf.maximum(length, 1024)
    step = tf.bitwise.right_shift(_low_bits_set(length) + 1, steps_per_octave.bit_length())
    return (length + step - 1) // step * step


def _stable_summary(keys, distances, counts, relevant, ranks, num_bins):
    """AP@ranks[-1] and the relevant items within each rank of `ranks` (sorted), under the stable ranking.

    Args:
        keys, distances: pair keys and distances of the items to rank, flat in row-major order (database order
            within a row); every item ranked before any of them in its row must be among them. Items at distance
            K + 1 are padding, dropped (by the stable partition, without copying the rest).
        counts, relevant: (rows, K + 1) counts of those items, and of the relevant ones, per distance.

    A counting sort instead of a comparison sort (TF's sort is ~20× slower here): dynamic_partition keeps each
    partition in input order, so one stable partition by distance puts the items in (distance, row, database
    index) order, where each (row, distance) group is contiguous and in stable order. An item's rank is then its
    place in that order plus a per-group offset from the histogram; only relevant items are followed further,
    in `_relevant_ranks_summary`.
    """
    ranked = tf.concat(tf.dynamic_partition(keys, distances, num_bins + 1)[:num_bins], axis=0)
    position = tf.cast(tf.where(tf.bitwise.bitwise_and(ranked, 1))[:, 0], tf.int32)  # non-zero: relevant
    num_relevant = tf.shape(position)[0]
    # Four lengths per octave: a block's relevant items vary widely when the whole database is ranked, and eight
    # compiled often enough to add 2.6 s to the first NUS-WIDE-shaped stable mAP@all (four: 0.7 s over one, whose
    # padding made the warm top 1000 8 % slower on the CIFAR-10 shape, mAP@all 12 % on NUS-WIDE's).
    padding = [[0, _padded_length(num_relevant, steps_per_octave=4) - num_relevant]]
    summary = _traced_once(
        _relevant_ranks_summary, (_VECTOR,) * 2 + (_SCALAR,) + (_VECTOR,) * 3, jit_compile=True,
        num_bins=num_bins,
    )
    return summary(
        tf.pad(tf.gather(ranked, position), padding), tf.pad(position, padding), num_relevant,
        _group_offsets(counts), _group_offsets(relevant), ranks,
    )


def _stable_all(query_words, db_words, query_labels, db_labels, num_db, ranks, num_bins):
    """Summary of `_blockwise`: (AP, relevant items within each rank) of the stable ranking of the whole
    database."""
    keys, distances = _compiled(_pair_keys, query_labels, num_bins, with_distances=True, mask_padding=True)(
        query_words, db_words, query_labels, db_labels, num_db
    )
    counts, relevant = _bin_counts(keys, num_bins, tf.shape(keys)[0])
    return _stable_summary(tf.reshape(keys, [-1]), tf.reshape(distances, [-1]), counts, relevant, ranks, num_bins)


def _distance_of_rank(counts, rank):
    """Per row of per-distance counts (rows, K + 1), the distance at which `rank` falls (K where the row holds
    fewer items)."""
    reached = tf.cumsum(counts, axis=1) >= rank
    last = tf.shape(counts)[1] - 1
    return tf.where(tf.reduce_any(reached, axis=1), tf.argmax(reached, axis=1, output_type=tf.int32), last)


# XLA: about 3× faster than TF's broadcasting comparison.
_at_most = tf.function(
    lambda keys, limits: keys <= limits[:, None], input_signature=(_MATRIX, _VECTOR), jit_compile=True,
    autograph=False,
)


def _stable_top(query_words, db_words, query_labels, db_labels, num_db, ranks, num_bins):
    """As `_stable_all` for each row's top ranks[-1] < n_db, ranking only the candidates: the items at or below
    the distance where that rank falls, read off the full histogram of the block (padding keys exceed every
    row's cut)."""
    keys = _compiled(_pair_keys, query_labels, num_bins, with_distances=False, mask_padding=True)(
        query_words, db_words, query_labels, db_labels, num_db
    )
    rows, stride = tf.shape(keys)[0], 2 * num_bins
    counts, relevant = _bin_counts(keys, num_bins, rows)
    cut = _distance_of_rank(counts, ranks[-1])
    # distance ≤ cut ⟺ key ≤ row·stride + 2·cut + 1
    candidate = _at_most(keys, tf.range(rows) * stride + 2 * cut + 1)
    candidate_keys = tf.gather(tf.reshape(keys, [-1]), tf.where(tf.reshape(candidate, [-1]))[:, 0])
    distances = tf.bitwise.right_shift(candidate_keys % stride, 1)
    kept = tf.range(num_bins)[None, :] <= cut[:, None]
    return _stable_summary(
        candidate_keys, distances, tf.where(kept, counts, 0), tf.where(kept, relevant, 0), ranks, num_bins
    )


def _distance_keys(query_words, db_words, num_db, num_bins):
    """(K + 1)·row + distance of every pair, int32 (b, n), from one fused XLA pass; b·(K + 1), past every bin,
    for the database's padding (items from `num_db` on)."""
    num_rows = tf.shape(query_words)[0]
    keys = tf.range(num_rows)[:, None] * num_bins + word_hamming(query_words, db_words)
    return tf.where(tf.range(tf.shape(db_words)[0])[None, :] < num_db, keys, num_rows * num_bins)


def _rank_distances(query_words, db_words, query_labels, db_labels, num_db, ranks, num_bins):
    """Summary of `_blockwise`: per row, the distance at which rank ranks[-1] falls in `db_words`.

    One bincount of the flat (row, distance) keys: 0.6–0.7× the time of DenseBincount's per-row histograms of
    the distances (measured on the CIFAR-10 and NUS-WIDE shapes' samples).
    """
    del query_labels, db_labels  # distances alone
    rows = tf.shape(query_words)[0]
    keys = _compiled(_distance_keys, None, num_bins)(query_words, db_words, num_db)
    counts = tf.raw_ops.Bincount(arr=tf.reshape(keys, [-1]), size=rows * num_bins, weights=tf.zeros([0], tf.int32))
    return (_distance_of_rank(tf.reshape(counts, [rows, num_bins]), ranks[-1]),)


def _stable_top_sampled(
    query_words, db_words, query_labels, db_labels, num_db, ranks, num_bins, bounds, db_columns
):
    """As `_stable_top`, without the full histogram: given a bound on each row's cut distance (from a sample of
    the database, `_Retrieval.cut_bounds`), one fused pass marks the pairs within the bound as bits of int64
    words (`_marked_words`, over the `_interleaved` database `db_columns`), and a second computes the keys of
    only those, one per slot, in row-major order, so database order within a row (`_keys_of_marked`). Their
    histogram is exact up to the bound, so their stable ranks are exact; ranks past the top k are dropped by
    `_stable_summary`. Where the candidates of some row fall short of the top k (the sample misjudged its cut:
    rare by construction, or an adversarial database order), the block is ranked by `_stable_top`.

    Measured against `_stable_top` in one process (benchmarks/retrieval_metrics.py shapes, top 1000): NUS-WIDE
    0.86–1.05 → 0.58–0.70 s, CIFAR-10 1.43–1.71 → 1.13–1.31 s: the histogram of every pair and the mask pass
    were the largest costs after the distances. Marks as bits, listed by arithmetic in XLA, replaced a bool a
    pair listed by `tf.where`: that cost about 0.45 ns per pair plus a mispredicted branch per candidate, 34 % of
    the NUS-WIDE shape's CPU time; the bits took 0.78–0.90× the time of the top 1000 there, 0.80× on
    CIFAR-10's, with each slot's word found by a scatter and a cumsum in XLA (by TF's bincount and cumsum:
    1.11× and 1.19× that).
    """
    rows = tf.shape(query_words)[0]
    marks, starts, num_candidates = _compiled(_marked_words, None)(query_words, db_columns, num_db, bounds)
    slots = tf.zeros([_padded_length(num_candidates, steps_per_octave=8), 0], tf.int32)
    candidate_keys, distances = _compiled(_keys_of_marked, query_labels, num_bins)(
        slots, num_candidates, marks, starts, query_words, db_words, query_labels, db_labels
    )
    counts, relevant = _bin_counts(candidate_keys, num_bins, rows)
    covered = tf.gather(tf.cumsum(counts, axis=1), bounds, batch_dims=1) >= ranks[-1]

    def rank_candidates():
        return _stable_summary(candidate_keys, distances, counts, relevant, ranks, num_bins)

    def rank_block():
        return _stable_top(query_words, db_words, query_labels, db_labels, num_db, ranks, num_bins)

    return tf.cond(tf.reduce_all(covered), rank_candidates, rank_block)


# A top k of at least twice this ranks by `_stable_top_sampled`, whose sample (every s-th database item, s = k //
# this, at most `_MAX_SAMPLE_STRIDE`) holds this many items at or below a row's cut on average.
_SAMPLE_ITEMS_AT_CUT = 64
_MAX_SAMPLE_STRIDE = 16
# The database's padding (`_Retrieval`) copies the codes of this many of its first items, in turn; its counts
# are subtracted by chunks of this many queries.
_PADDING_WORDS = 16
_PADDING_CHUNK = 2**16


def _padded_rows(count, steps_per_octave, multiple):
    """`count` rounded up to a multiple of `multiple` (a power of two) and of 2^m / `steps_per_octave` for 2^m ≤
    `count` < 2^(m+1): XLA compiles each pass once per shape, so padding the database's and a lone block's rows
    to these lengths bounds the compilations of problems of any sizes, at a padding of 1 / `steps_per_octave` of
    the work at most."""
    step = max(multiple, (1 << (count.bit_length() - 1)) // steps_per_octave)
    return -(-count // step) * step


class _Retrieval:
    """Validated codes and labels of one query / database pair, packed into int64 words, evaluated by blocks.

    The database is padded to `_padded_rows` (64 lengths an octave, multiples of 64) with copies of its first
    `_PADDING_WORDS` items' codes that share no label: the passes mask them out by index (`num_db` on), and the
    histograms subtract their counts (`padding_counts`). XLA compiles each pass once per shape, and each
    compilation holds memory maps for the life of the process: unpadded, 710 database sizes (one top-1000 call
    each, about 90 maps a new size) passed the kernel's limit of 65,530 and the process died of a segmentation
    fault; padded, those sizes share 12 lengths. Copies, not zero words: the histograms' bincount then counts the
    padding at varied distances, where a run of equal keys (all at a query's own population count) cost it about
    5 ns an item, 3 % of the tie-averaged mAP; the mask costs the pair keys' pass 1.12× its time, so the
    histograms do without it.
    """

    def __init__(self, query_codes, db_codes, query_labels, db_labels, query_block_size):
        query_words, db_words, num_bits = as_word_pair(query_codes, db_codes)
        self.num_queries, self.num_db = query_words.shape[0], db_words.shape[0]
        self.num_bins = num_bits + 1
        query_labels, db_labels, self.multi_label = as_label_pair(
            query_labels, db_labels, self.num_queries, self.num_db
        )
        num_padding = _padded_rows(self.num_db, steps_per_octave=64, multiple=64) - self.num_db
        # The item each padding item copies (`padding_counts` counts them).
        self.copied = np.arange(num_padding) % min(self.num_db, _PADDING_WORDS)
        db_words = np.concatenate([db_words, db_words[self.copied]])
        if self.multi_label:
            db_labels = np.pad(db_labels, [(0, num_padding), (0, 0)])  # no class
        else:
            db_labels = np.pad(db_labels, (0, num_padding), constant_values=-1)  # no class id (they count from 0)
        pack = packed_words if self.multi_label else tf.constant
        self.query_words, self.db_words = tf.constant(query_words), tf.constant(db_words)
        self.query_labels, self.db_labels = pack(query_labels), pack(db_labels)
        check_int(query_block_size, "query_block_size", minimum=1, allow_none=True)
        self.block_size = query_block_size

    def summarise(
        self, summary, dtypes, ranks=(), db_words=None, num_db=None, row_inputs=(), db_inputs=(),
        block_elements=_BLOCK_ELEMENTS,
    ):
        """`_blockwise` over all queries: summary's outputs (rows = queries) of the given dtypes; `db_words`
        replaces the database's codes (a sample of them, its first `num_db` items real), `row_inputs` are int32
        vectors of one entry per query, `db_inputs` int64 matrices every block reads whole; blocks of about
        `block_elements` pairs unless the user chose their rows."""
        db_words, num_db = (self.db_words, self.num_db) if db_words is None else (db_words, num_db)
        # Caps both the (block × n_db) matrices and the (block × 2(K + 1)) histogram bins.
        block = self.block_size or max(1, block_elements // max(db_words.shape[0], 2 * self.num_bins))
        query_words, query_labels, rows = self.query_words, self.query_labels, self.num_queries
        if rows < block:  # one block, padded by repeats of the last query (whose outputs are dropped)
            block = min(block, _padded_rows(rows, steps_per_octave=16, multiple=8))
            repeats = tf.minimum(tf.range(block), rows - 1)
            query_words, query_labels = tf.gather(query_words, repeats), tf.gather(query_labels, repeats)
            row_inputs = [tf.gather(values, repeats) for values in row_inputs]
        labels = _WORDS if self.multi_label else _VECTOR
        run = _traced_once(
            _blockwise,
            (
                _WORDS, _WORDS, labels, labels, _SCALAR, (_VECTOR,) * len(row_inputs), (_WORDS,) * len(db_inputs),
                _SCALAR, _VECTOR,
            ),
            summary=summary,
            num_bins=self.num_bins,
            dtypes=dtypes,
        )
        outputs = run(
            query_words,
            db_words,
            query_labels,
            self.db_labels,
            tf.constant(num_db, tf.int32),
            tuple(row_inputs),
            tuple(db_inputs),
            tf.constant(block, tf.int32),
            tf.constant(ranks, tf.int32, shape=[len(ranks)]),
        )
        return tuple(output[:rows] for output in outputs)

    def histograms(self):
        """Items and relevant items per (query, distance), int32 (n_query, K + 1) each."""
        counts, relevant = self.summarise(_histograms, (tf.int32, tf.int32))
        return counts - self.padding_counts(), relevant

    def padding_counts(self):
        """The database's padding per (query, distance), int32 (n_query, K + 1), counted in numpy from the
        distances of the few items it copies, by chunks of queries (in the graph loop, per block, it cost
        2–3 % of the tie-averaged mAP on the CIFAR-10 shape; this, about 1 %)."""
        copies = np.bincount(self.copied)
        # Unsigned: numpy counts the bits of a signed integer's absolute value.
        query_words = self.query_words.numpy().view(np.uint64)
        copied = self.db_words[: len(copies)].numpy().view(np.uint64)
        counts = np.zeros(self.num_queries * self.num_bins)
        for start in range(0, self.num_queries, _PADDING_CHUNK):
            chunk = query_words[start : start + _PADDING_CHUNK]
            keys = np.bitwise_count(chunk[:, None, :] ^ copied[None]).sum(-1, dtype=np.int64)
            keys += (np.arange(start, start + len(chunk)) * self.num_bins)[:, None]
            counts += np.bincount(keys.ravel(), np.tile(copies, len(chunk)), minlength=counts.size)
        return tf.constant(counts.reshape(self.num_queries, self.num_bins), tf.int32)

    def relevant_totals(self):
        """Relevant database items per query, float64 (n_query,)."""
        (totals,) = self.summarise(_relevant_totals, (tf.int32,))
        return tf.cast(totals, tf.float64)

    def cut_bounds(self, depth):
        """Per query, a distance at or beyond the one where rank `depth` falls, almost surely: where the cumulative
        histogram of every s-th database item (s = depth // 64, at most 16) reaches its expected count at the cut
        plus three standard deviations. Evaluated before the top-k's blocks, in blocks of the sample's size."""
        stride = min(max(depth // _SAMPLE_ITEMS_AT_CUT, 1), _MAX_SAMPLE_STRIDE)
        sampled = -(-self.num_db // stride)  # its real items come first
        expected = depth * sampled / self.num_db
        (bounds,) = self.summarise(
            _rank_distances,
            (tf.int32,),
            [math.ceil(expected + 3 * math.sqrt(expected))],
            db_words=self.db_words[::stride],
            num_db=sampled,
            block_elements=_PAIRWISE_BLOCK_ELEMENTS,
        )
        return bounds

    def stable_hits(self, ranks):
        """(AP@max(ranks), relevant items within each rank) per query, stable ties."""
        ordered = sorted(set(ranks))
        block_elements, db_inputs = _BLOCK_ELEMENTS, ()
        if ordered[-1] >= self.num_db:
            summary, row_inputs, block_elements = _stable_all, (), _PAIRWISE_BLOCK_ELEMENTS
        elif ordered[-1] >= 2 * _SAMPLE_ITEMS_AT_CUT:
            summary, row_inputs = _stable_top_sampled, (self.cut_bounds(ordered[-1]),)
            db_inputs, block_elements = (_interleaved(self.db_words),), _MARKED_BLOCK_ELEMENTS
        else:
            summary, row_inputs = _stable_top, ()
        ap, hits_at = self.summarise(
            summary, (tf.float64,) * 2, ordered, row_inputs=row_inputs, db_inputs=db_inputs,
            block_elements=block_elements,
        )
        return ap, tf.gather(hits_at, [ordered.index(rank) for rank in ranks], axis=1)


def distance_histograms(query_codes, db_codes, query_labels, db_labels, query_block_size=None):
    """Per query, the number of database items and of relevant database items at each Hamming distance.

    Every tie-aware metric in this module is a function of these counts; compute them once to derive several.

    Args:
        query_codes, db_codes: ±1 codes (n, K) or packed uint8 codes, as for `hamming_distance`.
        query_labels, db_labels: class ids (n,) or multi-hot matrices (n, classes).
        query_block_size: queries per block (bounds memory); None picks ⌊2²² / n_db⌋ (⌊2²⁴ / n_db⌋ on a GPU).

    Returns:
        (counts, relevant_counts): int32 tensors (n_query, K + 1); column d counts items at distance d.
    """
    return _Retrieval(query_codes, db_codes, query_labels, db_labels, query_block_size).histograms()


def _harmonic_numbers(count):
    """H(0..count) in float64: H(m) = Σ_{j ≤ m} 1/j."""
    steps = 1.0 / tf.range(1, count + 1, dtype=tf.float64)
    return tf.concat([tf.zeros([1], tf.float64), tf.cumsum(steps)], axis=0)


def _expected_precision_sum(harmonic, before, size, relevant_before, relevant):
    """Σ over positions i of a tied group of E[rel_i · precision@i], the group's expected AP numerator.

    The group holds `size` items of which `relevant` are relevant, placed after `before` items of which
    `relevant_before` are relevant. At rank i = before + j (j = 1..size) an item is relevant with probability
    relevant/size and, given that, has (j − 1)(relevant − 1)/(size − 1) relevant group mates before it on average,
    so the sum is (relevant/size)·Σ_j (relevant_before + 1 + (j − 1)·slope)/(before + j), which telescopes into
    harmonic numbers (McSherry & Najork 2008, Eq. for tie-aware AP).
    """
    slope = tf.math.divide_no_nan(relevant - 1.0, size - 1.0)
    offset = relevant_before + 1.0 - (before + 1.0) * slope
    harmonic_span = tf.gather(harmonic, tf.cast(before + size, tf.int32)) - tf.gather(
        harmonic, tf.cast(before, tf.int32)
    )
    return tf.math.divide_no_nan(relevant, size) * (offset * harmonic_span + size * slope)


def _log_binomial(n, k):
    return tf.math.lgamma(n + 1.0) - tf.math.lgamma(k + 1.0) - tf.math.lgamma(n - k + 1.0)


def _split_at_rank(counts, relevant, rank):
    """Splits each query's distance groups at a rank cut-off.

    Returns the groups entirely within the top `rank` (mask), and for the group the cut falls strictly inside:
    items ranked before it (`before`), its size, its relevant count and how many of its items fall inside the cut
    (`inside`, 0 when the cut falls on a group boundary).
    """
    before = tf.cumsum(counts, axis=1, exclusive=True)
    within = before + counts <= rank
    cut = (before < rank) & (before + counts > rank)

    def at_cut(values):
        return tf.reduce_sum(tf.where(cut, values, 0.0), axis=1)

    boundary_before = at_cut(before)
    inside = tf.where(tf.reduce_any(cut, axis=1), rank - boundary_before, 0.0)
    return within, boundary_before, at_cut(counts), at_cut(relevant), inside


def _expected_average_precision(counts, relevant, top_k):
    """Tie-averaged AP@top_k per query from per-distance counts (top_k=None: all)."""
    counts = tf.cast(counts, tf.float64)
    relevant = tf.cast(relevant, tf.float64)
    num_db = int(tf.reduce_sum(counts[0]))
    harmonic = _harmonic_numbers(num_db)
    before = tf.cumsum(counts, axis=1, exclusive=True)
    relevant_before = tf.cumsum(relevant, axis=1, exclusive=True)
    group_sums = _expected_precision_sum(harmonic, before, counts, relevant_before, relevant)
    if top_k is None or top_k >= num_db:
        return tf.math.divide_no_nan(tf.reduce_sum(group_sums, axis=1), tf.reduce_sum(relevant, axis=1))

    rank = tf.constant(float(top_k), tf.float64)
    within, cut_before, cut_size, cut_relevant, inside = _split_at_rank(counts, relevant, rank)
    numerator_within = tf.reduce_sum(tf.where(within, group_sums, 0.0), axis=1)[:, None]
    relevant_within = tf.reduce_sum(tf.where(within, relevant, 0.0), axis=1)[:, None]
    # The number h of relevant items among the `inside` positions of the cut group is hypergeometric; given h they
    # are uniformly placed there, so the cut group's numerator is the same closed form over `inside` positions.
    max_hits = int(tf.reduce_max(tf.minimum(inside, cut_relevant)))
    hits = tf.range(max_hits + 1, dtype=tf.float64)[None, :]
    cut_size, cut_relevant, inside, cut_before = (v[:, None] for v in (cut_size, cut_relevant, inside, cut_before))
    feasible = (hits <= cut_relevant) & (inside - hits <= cut_size - cut_relevant) & (hits <= inside)
    log_pmf = (
        _log_binomial(cut_relevant, tf.minimum(hits, cut_relevant))
        + _log_binomial(cut_size - cut_relevant, tf.clip_by_value(inside - hits, 0.0, cut_size - cut_relevant))
        - _log_binomial(cut_size, inside)
    )
    pmf = tf.where(feasible, tf.exp(log_pmf), 0.0)
    numerator_cut = _expected_precision_sum(harmonic, cut_before, inside, relevant_within, hits)
    conditional_ap = tf.math.divide_no_nan(numerator_within + numerator_cut, relevant_within + hits)
    return tf.reduce_sum(pmf * conditional_ap, axis=1)


def _expected_relevant_in_top(counts, relevant, rank):
    """Expected number of relevant items within the top `rank`, tie-averaged, per query."""
    counts = tf.cast(counts, tf.float64)
    relevant = tf.cast(relevant, tf.float64)
    within, _, cut_size, cut_relevant, inside = _split_at_rank(counts, relevant, tf.constant(float(rank), tf.float64))
    return tf.reduce_sum(tf.where(within, relevant, 0.0), axis=1) + tf.math.divide_no_nan(inside * cut_relevant, cut_size)


def average_precision(
    query_codes, db_codes, query_labels, db_labels, top_k=None, ties="average", query_block_size=None
):
    """Average precision of every query's Hamming ranking of the database (AP@top_k).

    See the module docstring for the relevance, AP@k and tie conventions.

    Args:
        query_codes: (n_query, K) ±1 codes, or packed uint8 codes (`tfhash.codes.pack_codes`).
        db_codes: (n_db, K) codes in the same form.
        query_labels: (n_query,) integer class ids or (n_query, classes) multi-hot matrix.
        db_labels: database labels in the same form.
        top_k: rank cut-off k of AP@k; None (or ≥ n_db) ranks the whole database (mAP@all).
        ties: "average" (expected AP over all orders of tied items, closed form) or "stable" (ties ranked by
            database index).
        query_block_size: queries evaluated together; None picks ⌊2²² / n_db⌋ (⌊2²⁰ / n_db⌋ for the stable
            ranking of the whole database, ⌊2²⁴ / n_db⌋ for its top k ≥ 128 and on a GPU; bounds peak memory).

    Returns:
        float64 tensor (n_query,).

    Reference:
        McSherry & Najork, ECIR 2008, for the tie-aware closed form.
    """
    check_int(top_k, "top_k", minimum=1, allow_none=True)
    check_ties(ties)
    retrieval = _Retrieval(query_codes, db_codes, query_labels, db_labels, query_block_size)
    if ties == "average":
        return _expected_average_precision(*retrieval.histograms(), top_k)
    depth = retrieval.num_db if top_k is None else min(top_k, retrieval.num_db)
    ap, _ = retrieval.stable_hits([depth])
    return ap


def mean_average_precision(
    query_codes, db_codes, query_labels, db_labels, top_k=None, ties="average", query_block_size=None
):
    """Mean over queries of `average_precision` (mAP@top_k); a float64 scalar tensor.

    Example:
        >>> codes = [[1, 1], [1, -1], [-1, -1]]
        >>> float(mean_average_precision(codes, codes, [0, 0, 1], [0, 0, 1]))
        1.0
    """
    return tf.reduce_mean(
        average_precision(query_codes, db_codes, query_labels, db_labels, top_k, ties, query_block_size)
    )


def precision_recall_by_rank(
    query_codes, db_codes, query_labels, db_labels, ranks, ties="average", query_block_size=None
):
    """Mean precision and recall over queries at each rank cut-off N in `ranks` (the PR curve by rank).

    Precision@N = relevant items in the top N / N; recall@N = relevant items in the top N / all relevant items
    (0 for a query without relevant items). With ties="average" the counts are expectations over tie orders.

    Args:
        ranks: positive integers, each at most n_db.

    Returns:
        (precision, recall): float64 tensors of shape (len(ranks),).
    """
    check_ties(ties)
    ranks = list(ranks)
    if not ranks:
        raise ValueError("`ranks` must name at least one rank cut-off.")
    for rank in ranks:
        check_int(rank, "ranks", minimum=1)
    retrieval = _Retrieval(query_codes, db_codes, query_labels, db_labels, query_block_size)
    if max(ranks) > retrieval.num_db:
        raise ValueError(f"`ranks` must not exceed the database size {retrieval.num_db}, got {max(ranks)}.")
    if ties == "average":
        counts, relevant = retrieval.histograms()
        hits = tf.stack([_expected_relevant_in_top(counts, relevant, rank) for rank in ranks], axis=1)
        totals = tf.reduce_sum(tf.cast(relevant, tf.float64), axis=1)
    else:
        _, hits = retrieval.stable_hits(ranks)
        totals = retrieval.relevant_totals()
    precision = hits / tf.constant(ranks, tf.float64)
    recall = tf.math.divide_no_nan(hits, totals[:, None])
    return tf.reduce_mean(precision, axis=0), tf.reduce_mean(recall, axis=0)


def precision_at_n(query_codes, db_codes, query_labels, db_labels, n=1000, ties="average", query_block_size=None):
    """Mean over queries of the fraction of relevant items among the top `n` (P@N); a float64 scalar tensor."""
    precision, _ = precision_recall_by_rank(
        query_codes, db_codes, query_labels, db_labels, [n], ties, query_block_size
    )
    return precision[0]


def precision_recall_by_radius(query_codes, db_codes, query_labels, db_labels, query_block_size=None):
    """Mean precision and recall over queries of the items within Hamming radius r, for r = 0..K.

    A radius retrieves a set, so ties play no part. A query that retrieves nothing within radius r has precision
    0 there (the convention of the field's "precision within Hamming radius 2"); a query without relevant items
    has recall 0.

    Returns:
        (precision, recall): float64 tensors of shape (K + 1,), entry r for radius r.
    """
    counts, relevant = distance_histograms(query_codes, db_codes, query_labels, db_labels, query_block_size)
    retrieved = tf.cumsum(tf.cast(counts, tf.float64), axis=1)
    hits = tf.cumsum(tf.cast(relevant, tf.float64), axis=1)
    precision = tf.math.divide_no_nan(hits, retrieved)
    recall = tf.math.divide_no_nan(hits, hits[:, -1:])
    return tf.reduce_mean(precision, axis=0), tf.reduce_mean(recall, axis=0)


def precision_within_radius(query_codes, db_codes, query_labels, db_labels, radius=2, query_block_size=None):
    """Mean precision of the items within Hamming radius `radius` (0 for a query retrieving nothing)."""
    check_int(radius, "radius", minimum=0)
    precision, _ = precision_recall_by_radius(query_codes, db_codes, query_labels, db_labels, query_block_size)
    return precision[min(radius, precision.shape[0] - 1)]
