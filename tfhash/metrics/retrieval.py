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

Memory: queries are processed in blocks of ``query_block_size`` rows (by default ⌊2²⁴ / n_db⌋, at least 1), so the
(block × n_db) matrices hold at most 2²⁴ elements whatever the number of queries. Peak extra memory is then about
50 bytes × 2²⁴ ≈ 0.8 GB for ``ties="stable"`` with ``top_k=None`` (which ranks every item) and about 0.3–0.55 GB
otherwise, plus the unpacked database codes (4 bytes × n_db × K): measured 0.29–0.76 GB on CIFAR-10- and
NUS-WIDE-sized problems (benchmarks/README.md). A smaller ``query_block_size`` lowers it proportionally.
"""

import tensorflow as tf

from tfhash._validation import check_int
from tfhash.metrics._inputs import TIE_RULES, as_code_pair, as_label_pair, check_ties

_BLOCK_ELEMENTS = 2**24


@tf.function(reduce_retracing=True)
def _ranking_keys(query, database, query_labels, db_labels):
    """2·Hamming distance + relevance (0/1) for every (query, database item) pair, as int32 (b, n_db).

    K − q·b equals 2·distance exactly for ±1 codes, so distance and relevance share one fused elementwise pass.
    """
    if query_labels.shape.rank == 2:
        relevant = tf.matmul(query_labels, db_labels, transpose_b=True) > 0.0
    else:
        relevant = tf.equal(query_labels[:, None], db_labels[None, :])
    twice_distance = tf.cast(tf.shape(query)[1], tf.float32) - tf.matmul(query, database, transpose_b=True)
    return tf.cast(twice_distance + tf.cast(relevant, tf.float32), tf.int32)


@tf.function(reduce_retracing=True)
def _histograms(keys, num_bins):
    """Items and relevant items per (query, distance): one bincount over (row, distance, relevance) keys."""
    rows = tf.shape(keys)[0]
    size = rows * num_bins * 2
    flat = tf.reshape(keys + tf.range(rows)[:, None] * (2 * num_bins), [-1])
    counts = tf.reshape(tf.math.bincount(flat, minlength=size, maxlength=size), [rows, num_bins, 2])
    return counts[..., 0] + counts[..., 1], counts[..., 1]


@tf.function
def _stable_hits(keys, num_bins, ranks):
    """Stable ranking (by distance, then database index) of each query's top max(ranks) ≤ n_db items, summarised.

    Returns per query: AP@max(ranks), the relevant items within each rank cut-off (rows, len(ranks)), and the
    relevant items in the whole database.

    A counting sort instead of a comparison sort (TF's top_k is several times slower): dynamic_partition keeps
    each partition in input order, so stable-partitioning row-major items by distance and then by row ranks each
    row by (distance, database index) in O(n). For a top shorter than the database, only the candidates at or
    below the distance where rank max(ranks) falls (read off the histogram) are ranked.
    """
    rows, num_db = keys.shape
    depth = max(ranks)
    total = tf.reduce_sum(tf.cast(tf.bitwise.bitwise_and(keys, 1), tf.float64), axis=1)
    if depth < num_db:
        counts, _ = _histograms(keys, num_bins)
        cut_distance = tf.argmax(tf.cumsum(counts, axis=1) >= depth, axis=1, output_type=tf.int32)
        candidates = tf.where(tf.bitwise.right_shift(keys, 1) <= cut_distance[:, None])  # row-major
        row = tf.cast(candidates[:, 0], tf.int32)
        keys = tf.gather_nd(keys, candidates)
    else:
        row = tf.reshape(tf.broadcast_to(tf.range(rows)[:, None], [rows, num_db]), [-1])
        keys = tf.reshape(keys, [-1])
    # Two stable passes (LSD radix): by distance, then by row, give the order (row, distance, database index).
    payload = row * 2 + tf.bitwise.bitwise_and(keys, 1)  # row and relevance travel together
    by_distance = tf.concat(tf.dynamic_partition(payload, tf.bitwise.right_shift(keys, 1), num_bins), axis=0)
    ranked = tf.concat(tf.dynamic_partition(by_distance, tf.bitwise.right_shift(by_distance, 1), rows), axis=0)

    # Positions and running hit counts, for the relevant items only.
    row_start = tf.cumsum(tf.math.bincount(row, minlength=rows, maxlength=rows), exclusive=True)
    relevant_at = tf.cast(tf.where(tf.bitwise.bitwise_and(ranked, 1) == 1)[:, 0], tf.int32)
    relevant_row = tf.bitwise.right_shift(tf.gather(ranked, relevant_at), 1)
    position = relevant_at - tf.gather(row_start, relevant_row) + 1
    relevant_start = tf.cumsum(tf.math.bincount(relevant_row, minlength=rows, maxlength=rows), exclusive=True)
    hits = tf.range(tf.shape(relevant_at)[0]) - tf.gather(relevant_start, relevant_row) + 1

    def in_top(rank, values):
        return tf.math.unsorted_segment_sum(tf.where(position <= rank, values, 0.0), relevant_row, rows)

    precision_sum = in_top(depth, tf.cast(hits, tf.float64) / tf.cast(position, tf.float64))
    hits_at = tf.stack([in_top(rank, tf.ones_like(position, tf.float64)) for rank in ranks], axis=1)
    return tf.math.divide_no_nan(precision_sum, hits_at[:, ranks.index(depth)]), hits_at, total


class _Retrieval:
    """Validated codes and labels of one query / database pair, evaluated block by block."""

    def __init__(self, query_codes, db_codes, query_labels, db_labels, query_block_size):
        self.query, self.database = as_code_pair(query_codes, db_codes)
        self.num_queries, self.num_db = self.query.shape[0], self.database.shape[0]
        self.num_bins = self.query.shape[1] + 1
        self.query_labels, self.db_labels, _ = as_label_pair(
            query_labels, db_labels, self.num_queries, self.num_db
        )
        check_int(query_block_size, "query_block_size", minimum=1, allow_none=True)
        self.block_size = query_block_size

    def map_blocks(self, fn):
        """Applies fn(ranking keys (b, n_db)) per block of queries; concatenates the rows."""
        # Caps both the (block × n_db) matrices and the (block × 2(K + 1)) histogram bins at 2²⁴ elements.
        block = self.block_size or max(1, _BLOCK_ELEMENTS // max(self.num_db, 2 * self.num_bins))
        outputs = []
        for start in range(0, self.num_queries, block):
            stop = min(start + block, self.num_queries)
            keys = _ranking_keys(
                self.query[start:stop], self.database, self.query_labels[start:stop], self.db_labels
            )
            outputs.append(fn(keys))
        return tf.nest.map_structure(lambda *parts: tf.concat(parts, axis=0), *outputs)

    def histograms(self):
        return self.map_blocks(lambda keys: _histograms(keys, self.num_bins))

    def stable_hits(self, ranks):
        """(AP@max(ranks), relevant items within each rank, relevant items in all) per query, stable ties."""
        return self.map_blocks(lambda keys: _stable_hits(keys, self.num_bins, tuple(ranks)))


def distance_histograms(query_codes, db_codes, query_labels, db_labels, query_block_size=None):
    """Per query, the number of database items and of relevant database items at each Hamming distance.

    Every tie-aware metric in this module is a function of these counts; compute them once to derive several.

    Args:
        query_codes, db_codes: ±1 codes (n, K) or packed uint8 codes, as for `hamming_distance`.
        query_labels, db_labels: class ids (n,) or multi-hot matrices (n, classes).
        query_block_size: queries per block (bounds memory); None picks ⌊2²⁴ / n_db⌋.

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
        query_block_size: queries evaluated together; None picks ⌊2²⁴ / n_db⌋ (bounds peak memory).

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
    ap, _, _ = retrieval.stable_hits([depth])
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
        _, hits, totals = retrieval.stable_hits(ranks)
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
