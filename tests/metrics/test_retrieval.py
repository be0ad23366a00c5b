import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.metrics import reference
from tfhash.codes import pack_codes
from tfhash.metrics import (
    average_precision,
    distance_histograms,
    hamming_distance,
    mean_average_precision,
    precision_at_n,
    precision_recall_by_radius,
    precision_recall_by_rank,
    precision_within_radius,
)


def random_codes(rng, rows, bits):
    return rng.choice([-1.0, 1.0], size=(rows, bits))


def clustered_problem(rng, num_queries, num_db, bits, classes=4, flip=0.2):
    """Codes near one prototype per class, with label noise in the codes: realistic, tie-heavy rankings."""
    prototypes = random_codes(rng, classes, bits)
    query_labels = rng.integers(0, classes, num_queries)
    db_labels = rng.integers(0, classes, num_db)

    def noisy(labels):
        codes = prototypes[labels].copy()
        codes[rng.random(codes.shape) < flip] *= -1
        return codes

    return noisy(query_labels), noisy(db_labels), query_labels, db_labels


def multi_label_problem(rng, num_queries, num_db, bits, classes=5):
    query_labels = (rng.random((num_queries, classes)) < 0.3).astype(np.int64)
    db_labels = (rng.random((num_db, classes)) < 0.3).astype(np.int64)
    query_labels[0] = 0  # a query without labels has no relevant item
    return random_codes(rng, num_queries, bits), random_codes(rng, num_db, bits), query_labels, db_labels


# ---------------------------------------------------------------------------------------------- Hamming distance


def test_hamming_distance_matches_bit_count_for_signed_and_packed_codes():
    rng = np.random.default_rng(0)
    query, database = random_codes(rng, 9, 13), random_codes(rng, 11, 13)
    expected = reference.hamming(query, database)
    np.testing.assert_array_equal(hamming_distance(query, database).numpy(), expected)
    np.testing.assert_array_equal(hamming_distance(pack_codes(query), pack_codes(database)).numpy(), expected)


def test_hamming_distance_over_several_words_and_packed_padding():
    # 130 bits: three 64-bit words, the last one mostly padding; packed, 17 bytes of which 6 padding bits.
    rng = np.random.default_rng(1)
    query, database = random_codes(rng, 5, 130), random_codes(rng, 7, 130)
    expected = reference.hamming(query, database)
    np.testing.assert_array_equal(hamming_distance(query, database).numpy(), expected)
    np.testing.assert_array_equal(hamming_distance(pack_codes(query), pack_codes(database)).numpy(), expected)
    np.testing.assert_array_equal(hamming_distance(query > 0, database > 0).numpy(), expected)


def test_hamming_distance_hand_worked():
    np.testing.assert_array_equal(
        hamming_distance([[1, -1, 1]], [[1, 1, 1], [-1, 1, -1], [1, -1, 1]]).numpy(), [[1, 3, 0]]
    )


# ------------------------------------------------------------------------------------------- stable tie rule


@pytest.mark.parametrize("top_k", [1, 100, 149, 150, None])
@pytest.mark.parametrize("bits", [4, 16])
def test_stable_ap_matches_per_query_loop_single_label(top_k, bits):
    rng = np.random.default_rng(bits)
    problem = clustered_problem(rng, 30, 150, bits)
    np.testing.assert_allclose(
        average_precision(*problem, top_k=top_k, ties="stable").numpy(),
        reference.stable_average_precision(*problem, top_k=top_k),
        rtol=0,
        atol=1e-12,
    )


@pytest.mark.parametrize("top_k", [1, 100, 149, 150, None])
def test_stable_ap_matches_per_query_loop_multi_label(top_k):
    rng = np.random.default_rng(1)
    problem = multi_label_problem(rng, 25, 150, 6)
    result = average_precision(*problem, top_k=top_k, ties="stable").numpy()
    np.testing.assert_allclose(result, reference.stable_average_precision(*problem, top_k=top_k), atol=1e-12)
    assert result[0] == 0.0


def test_stable_ranks_ties_by_database_index_hand_worked():
    # All items tie at distance 0: the stable ranking is the database order, relevant at ranks 2 and 3.
    codes = np.ones((4, 2))
    ap = average_precision(codes[:1], codes, [1], [0, 1, 1, 0], ties="stable").numpy()
    np.testing.assert_allclose(ap, [(1 / 2 + 2 / 3) / 2])


def test_stable_top_k_cut_inside_a_tied_group():
    # 3 bits over 200 items: groups of ~25–75 tied items, so every cut below falls strictly inside a group.
    rng = np.random.default_rng(21)
    problem = clustered_problem(rng, 12, 200, 3, classes=3, flip=0.3)
    distances = np.sort(reference.hamming(problem[0], problem[1]), axis=1)
    for top_k in [7, 60, 123, 199]:
        assert np.any(distances[:, top_k - 1] == distances[:, top_k]), "the cut must split a tied group"
        np.testing.assert_allclose(
            average_precision(*problem, top_k=top_k, ties="stable").numpy(),
            reference.stable_average_precision(*problem, top_k=top_k),
            atol=1e-12,
            err_msg=f"top_k={top_k}",
        )


def test_stable_cut_inside_a_group_hand_worked():
    # 5 items tie at distance 0, item 5 is at distance 2; relevant: items 1, 3 and 5. The top 2 (items 0, 1)
    # hold one relevant item at rank 2; the top 4 add item 3 at rank 4; all: item 5 at rank 6.
    database = np.array([[1, 1]] * 5 + [[-1, -1]])
    labels = [0, 1, 0, 1, 0, 1]
    for top_k, expected in [(1, 0.0), (2, 1 / 2), (4, (1 / 2 + 2 / 4) / 2), (None, (1 / 2 + 2 / 4 + 3 / 6) / 3)]:
        ap = average_precision([[1, 1]], database, [1], labels, top_k=top_k, ties="stable").numpy()
        np.testing.assert_allclose(ap, [expected], atol=1e-15, err_msg=f"top_k={top_k}")


@pytest.mark.parametrize("form", ["class ids", "multi-hot", "several words"])
def test_sampled_top_k_matches_the_reference(form):
    # A top k of at least 128 bounds each row's cut from every s-th database item (s = k // 64, at most 16);
    # 2,000 items of 12 bits leave ties at every cut; 100 bits and 70 labels take two words each.
    from tfhash.metrics import retrieval

    rng = np.random.default_rng(29)
    if form == "multi-hot":
        problem = multi_label_problem(rng, 23, 2000, 12)
    elif form == "class ids":
        problem = clustered_problem(rng, 23, 2000, 12, classes=5, flip=0.25)
    else:
        query, database = clustered_problem(rng, 23, 2000, 100, flip=0.3)[:2]
        query_labels = (rng.random((23, 70)) < 0.03).astype(np.int64)
        db_labels = (rng.random((2000, 70)) < 0.03).astype(np.int64)
        query_labels[1:, 66], db_labels[::3, 66] = 1, 1
        problem = query, database, query_labels, db_labels
    assert 128 >= 2 * retrieval._SAMPLE_ITEMS_AT_CUT
    for top_k in [128, 300, 1000, 1999]:
        np.testing.assert_allclose(
            average_precision(*problem, top_k=top_k, ties="stable", query_block_size=5).numpy(),
            reference.stable_average_precision(*problem, top_k=top_k),
            atol=1e-12,
            err_msg=f"top_k={top_k}",
        )


@pytest.mark.parametrize("bound", ["too low", "everything"])
def test_sampled_top_k_with_a_wrong_or_loose_bound(monkeypatch, bound):
    # Both branches: a bound below the cut sends the block to the full-histogram ranking, a bound of K makes
    # every item a candidate; either way the values are the reference's.
    from tfhash.metrics import retrieval

    problem = clustered_problem(np.random.default_rng(30), 9, 700, 10, classes=3, flip=0.3)
    expected = reference.stable_average_precision(*problem, top_k=200)
    monkeypatch.setattr(retrieval, "_TRACED", {})
    monkeypatch.setattr(
        retrieval._Retrieval,
        "cut_bounds",
        lambda self, depth: tf.fill([self.num_queries], 0 if bound == "too low" else self.num_bins - 1),
    )
    np.testing.assert_allclose(
        average_precision(*problem, top_k=200, ties="stable", query_block_size=4).numpy(), expected, atol=1e-12
    )


def test_sampled_top_k_over_a_database_ordered_against_the_sample():
    # Every 3rd item (the sample of a top 200 or 250: s = 3) is a copy of the query, the others are far away:
    # the sample bounds the cut at distance 0, where only 180 items lie, so the blocks are ranked in full.
    from tfhash.metrics import retrieval

    query = np.ones((2, 8))
    database = -np.ones((540, 8))
    database[::3] = 1
    database[1::3, 0] = 1  # distance 7
    labels = np.arange(540) % 2
    for top_k in [200, 250]:
        bounds = retrieval._Retrieval(query, database, [0, 1], labels, None).cut_bounds(top_k)
        np.testing.assert_array_equal(bounds.numpy(), [0, 0])  # the premise: a bound below the cut
        np.testing.assert_allclose(
            average_precision(query, database, [0, 1], labels, top_k=top_k, ties="stable").numpy(),
            reference.stable_average_precision(query, database, [0, 1], labels, top_k=top_k),
            atol=1e-12,
            err_msg=f"top_k={top_k}",
        )


@pytest.mark.parametrize("multi_label", [False, True])
def test_precision_recall_by_rank_stable_below_the_database_size(multi_label):
    # Ranks below n_db: the exact top-k (max rank < 128) and the sampled one; recall needs every relevant item.
    rng = np.random.default_rng(31)
    if multi_label:
        problem = multi_label_problem(rng, 12, 400, 7)
    else:
        problem = clustered_problem(rng, 12, 400, 7)
    distances, rel = reference.hamming(problem[0], problem[1]), reference.relevance(problem[2], problem[3])
    totals = rel.sum(1, keepdims=True)
    for ranks in [[5, 100], [5, 150, 399]]:
        hits = np.array([[rel[q][reference.stable_ranking(distances[q])][:n].sum() for n in ranks] for q in range(12)])
        precision, recall = precision_recall_by_rank(*problem, ranks, ties="stable", query_block_size=5)
        np.testing.assert_allclose(precision.numpy(), (hits / np.array(ranks)).mean(0), atol=1e-12)
        np.testing.assert_allclose(recall.numpy(), np.where(totals > 0, hits / np.maximum(totals, 1), 0).mean(0))


def several_words_problem(rng):
    # 100 bits (two 64-bit words) and 70 classes (two label words), some relevant only through label 66.
    query, database = random_codes(rng, 20, 100), random_codes(rng, 90, 100)
    query_labels = (rng.random((20, 70)) < 0.03).astype(np.int64)
    db_labels = (rng.random((90, 70)) < 0.03).astype(np.int64)
    query_labels[1:, 66], db_labels[::3, 66] = 1, 1
    return query, database, query_labels, db_labels


@pytest.mark.parametrize("top_k", [5, 64, None])
def test_stable_ap_over_several_code_and_label_words(top_k):
    problem = several_words_problem(np.random.default_rng(22))
    result = average_precision(*problem, top_k=top_k, ties="stable").numpy()
    np.testing.assert_allclose(result, reference.stable_average_precision(*problem, top_k=top_k), atol=1e-12)
    packed_codes = pack_codes(problem[0]), pack_codes(problem[1])
    packed = average_precision(*packed_codes, *problem[2:], top_k=top_k, ties="stable")
    np.testing.assert_array_equal(packed.numpy(), result)


def test_histograms_over_several_code_and_label_words():
    query, database, query_labels, db_labels = several_words_problem(np.random.default_rng(22))
    distances, rel = reference.hamming(query, database), reference.relevance(query_labels, db_labels)
    for codes in [(query, database), (pack_codes(query), pack_codes(database))]:
        counts, relevant = distance_histograms(*codes, query_labels, db_labels)
        for d in range(counts.shape[1]):
            np.testing.assert_array_equal(counts.numpy()[:, d], (distances == d).sum(1))
            np.testing.assert_array_equal(relevant.numpy()[:, d], ((distances == d) & rel).sum(1))


@pytest.mark.parametrize("top_k", [1, 13, None])
def test_stable_ap_of_packed_codes_matches_the_reference(top_k):
    rng = np.random.default_rng(23)
    query, database, query_labels, db_labels = clustered_problem(rng, 17, 80, 16)
    packed = average_precision(
        pack_codes(query), pack_codes(database), query_labels, db_labels, top_k=top_k, ties="stable"
    )
    expected = reference.stable_average_precision(query, database, query_labels, db_labels, top_k=top_k)
    np.testing.assert_allclose(packed.numpy(), expected, atol=1e-12)


def test_padded_length_rounds_up_to_a_step_of_the_octave_hand_worked():
    from tfhash.metrics.retrieval import _padded_length

    lengths = [0, 1, 1024, 1025, 1152, 1153, 2047, 2048, 2049, 4097, 2**20, 2**20 + 1]
    # At least 1024; one step per octave: the power of two at or above.
    padded = [int(_padded_length(tf.constant(length), steps_per_octave=1)) for length in lengths]
    assert padded == [1024, 1024, 1024, 2048, 2048, 2048, 2048, 2048, 4096, 8192, 2**20, 2**21]
    # Eight: within [2^m, 2^(m+1)) a multiple of 2^(m-3), steps of 128 up to 2048, of 256 up to 4096...
    padded = [int(_padded_length(tf.constant(length), steps_per_octave=8)) for length in lengths]
    assert padded == [1024, 1024, 1024, 1152, 1152, 1280, 2048, 2048, 2304, 4608, 2**20, 2**20 + 2**17]


def test_padded_rows_hand_worked():
    from tfhash.metrics.retrieval import _padded_rows

    counts = [1, 8, 9, 64, 65, 4095, 4096, 4097, 50_000, 193_000]
    # The database: 64 steps an octave, multiples of 64 (steps of 64 up to 8192, then 2^(m-6)).
    assert [_padded_rows(c, 64, 64) for c in counts] == [
        64, 64, 64, 64, 128, 4096, 4096, 4160, 50_176, 194_560
    ]
    # A lone block's queries: 16 steps an octave, multiples of 8.
    assert [_padded_rows(c, 16, 8) for c in counts] == [8, 8, 16, 64, 72, 4096, 4096, 4352, 51_200, 196_608]


@pytest.mark.parametrize("chunk", [3, 2**16])
def test_padding_is_subtracted_from_the_histograms_for_any_database_size(monkeypatch, chunk):
    # The database is padded with copies of its first items' codes (no label) to a bucketed length: counted by
    # the unmasked histogram pass and subtracted per query (by chunks of queries); masked by the stable ranking.
    from tfhash.metrics import retrieval

    monkeypatch.setattr(retrieval, "_PADDING_CHUNK", chunk)
    rng = np.random.default_rng(chunk)
    for num_db, bits in [(1, 64), (15, 10), (17, 64), (70, 70), (129, 130), (4097, 33)]:
        query, database, query_labels, db_labels = clustered_problem(rng, 10, num_db, bits, flip=0.3)
        assert retrieval._Retrieval(query, database, query_labels, db_labels, None).db_words.shape[0] > num_db
        distances = reference.hamming(query, database)
        relevant = reference.relevance(query_labels, db_labels)
        counts, relevant_counts = distance_histograms(query, database, query_labels, db_labels)
        for d in range(bits + 1):
            np.testing.assert_array_equal(counts.numpy()[:, d], (distances == d).sum(1))
            np.testing.assert_array_equal(relevant_counts.numpy()[:, d], ((distances == d) & relevant).sum(1))
        np.testing.assert_allclose(  # the tie-averaged AP is a function of the counts
            average_precision(query, database, query_labels, db_labels, ties="stable").numpy(),
            reference.stable_average_precision(query, database, query_labels, db_labels),
            atol=1e-12,
        )


def test_set_bit_finds_each_set_bit_of_a_word_hand_worked_and_random():
    from tfhash.metrics.retrieval import _set_bit

    # 0b1011_0100: set bits at 2, 4, 5, 7; the sign bit of an int64 (position 63) too.
    words = tf.constant([0b10110100] * 4 + [-(2**63), -1, -1], tf.int64)
    index = tf.constant([0, 1, 2, 3, 0, 0, 63], tf.int32)
    np.testing.assert_array_equal(_set_bit(words, index).numpy(), [2, 4, 5, 7, 63, 0, 63])
    rng = np.random.default_rng(6)
    bits = rng.random((500, 64)) < rng.random((500, 1))
    bits[bits.sum(1) == 0, 17] = True
    packed = (bits.astype(np.uint64) << np.arange(64, dtype=np.uint64)).sum(1, dtype=np.uint64).view(np.int64)
    index = np.array([rng.integers(0, row.sum()) for row in bits], np.int32)
    expected = [np.flatnonzero(row)[i] for row, i in zip(bits, index)]
    np.testing.assert_array_equal(_set_bit(tf.constant(packed), tf.constant(index)).numpy(), expected)


@pytest.mark.parametrize("num_db", [1, 64, 130])
def test_marked_words_and_their_keys_match_the_pairs_within_the_bounds(num_db):
    # Every pair within its row's bound, as bits over the interleaved (padded) database, then listed back in
    # row-major order with its key: against numpy, for whole, partial and all-marked words (row 0's bound is K).
    from tfhash.metrics import retrieval
    from tfhash.metrics.hamming import packed_words

    rng = np.random.default_rng(num_db)
    query, database, query_labels, db_labels = clustered_problem(rng, 5, num_db, 70, flip=0.3)
    distances = reference.hamming(query, database)
    bounds = np.array([70, 0, 30, 33, 36], np.int32)
    within = distances <= bounds[:, None]
    query_words, db_words = packed_words(query > 0), packed_words(database > 0)
    marked = retrieval._compiled(retrieval._marked_words, None)
    marks, starts, total = marked(query_words, retrieval._interleaved(db_words), num_db, tf.constant(bounds))
    bits = (marks.numpy()[:, :, None].view(np.uint64) >> np.arange(64, dtype=np.uint64)) & np.uint64(1)
    np.testing.assert_array_equal(bits.reshape(5, -1)[:, :num_db].astype(bool), within)
    assert not bits.reshape(5, -1)[:, num_db:].any()  # the padding items
    np.testing.assert_array_equal(starts.numpy(), np.concatenate([[0], np.cumsum(bits.sum(2).reshape(-1))[:-1]]))
    assert int(total) == within.sum()
    keys_of = retrieval._compiled(retrieval._keys_of_marked, tf.constant(query_labels), num_bins=71)
    keys, key_distances = keys_of(
        tf.zeros([int(total) + 7, 0], tf.int32), total, marks, starts, query_words, db_words,
        tf.constant(query_labels, tf.int32), tf.constant(db_labels, tf.int32),
    )
    rows, items = np.nonzero(within)
    relevant = query_labels[rows] == db_labels[items]
    # The marked pairs, then 7 padding slots past every histogram bin and distance.
    np.testing.assert_array_equal(key_distances.numpy(), np.append(distances[rows, items], [71] * 7))
    expected_keys = rows * 142 + 2 * distances[rows, items] + relevant
    np.testing.assert_array_equal(keys.numpy(), np.append(expected_keys, [710] * 7))


def test_count_below_is_searchsorted_left_for_every_length():
    from tfhash.metrics.retrieval import _count_below

    rng = np.random.default_rng(5)
    values = np.arange(-1, 40, dtype=np.int32)
    for size in range(1, 18):
        cutoffs = np.sort(rng.choice(np.arange(1, 38), size, replace=False)).astype(np.int32)
        np.testing.assert_array_equal(
            _count_below(tf.constant(cutoffs), tf.constant(values)).numpy(),
            np.searchsorted(cutoffs, values, side="left"),
            err_msg=f"cut-offs {cutoffs}",
        )


@pytest.mark.parametrize("num_relevant", [1023, 1024, 1025])
def test_stable_ap_where_the_relevant_items_fill_a_padded_length_exactly_or_overflow_it(num_relevant):
    # One block whose relevant items number just below, at and above the padded length of 1024: the padding
    # after them must count nowhere.
    rng = np.random.default_rng(num_relevant)
    query, database = random_codes(rng, 1, 8), random_codes(rng, 1100, 8)
    db_labels = np.zeros(1100, np.int64)
    db_labels[rng.permutation(1100)[num_relevant:]] = 1
    for top_k in [1050, None]:
        np.testing.assert_allclose(
            average_precision(query, database, [0], db_labels, top_k=top_k, ties="stable").numpy(),
            reference.stable_average_precision(query, database, np.array([0]), db_labels, top_k=top_k),
            atol=1e-12,
        )


@pytest.mark.parametrize("top_k", [3, 40, None])
def test_stable_blocks_that_do_not_divide_the_queries(top_k):
    # 31 queries in blocks of 4 (the last one holding 3), multi-label: the same values as the reference.
    rng = np.random.default_rng(24)
    problem = multi_label_problem(rng, 31, 60, 5)
    expected = reference.stable_average_precision(*problem, top_k=top_k)
    for block in [4, 30, 31, 1000]:
        np.testing.assert_allclose(
            average_precision(*problem, top_k=top_k, ties="stable", query_block_size=block).numpy(),
            expected,
            atol=1e-12,
            err_msg=f"block={block}",
        )


@pytest.mark.parametrize("top_k", [4, None])
@pytest.mark.parametrize("ties", ["average", "stable"])
def test_blocks_evaluated_one_or_several_at_once_agree(monkeypatch, top_k, ties):
    # The graph loop may evaluate up to one block per CPU core at once; blocks of 2 rows of 7 queries leave a
    # short last block.
    from tfhash.metrics import retrieval

    problem = clustered_problem(np.random.default_rng(28), 7, 50, 6)
    expected = average_precision(*problem, top_k=top_k, ties=ties, query_block_size=7).numpy()
    if ties == "stable":
        np.testing.assert_allclose(expected, reference.stable_average_precision(*problem, top_k=top_k), atol=1e-12)
    for parallel in [1, 9]:
        monkeypatch.setattr(retrieval, "_PARALLEL_BLOCKS", parallel)
        monkeypatch.setattr(retrieval, "_TRACED", {})
        np.testing.assert_array_equal(
            average_precision(*problem, top_k=top_k, ties=ties, query_block_size=2).numpy(), expected, f"{parallel}"
        )


@pytest.mark.parametrize("ties", ["average", "stable"])
def test_top_k_of_the_whole_database_or_more(ties):
    rng = np.random.default_rng(25)
    problem = clustered_problem(rng, 9, 33, 4)
    everything = average_precision(*problem, ties=ties).numpy()
    for top_k in [33, 34, 500]:
        np.testing.assert_array_equal(average_precision(*problem, top_k=top_k, ties=ties).numpy(), everything)
    if ties == "stable":
        np.testing.assert_allclose(everything, reference.stable_average_precision(*problem), atol=1e-12)


def test_differently_sized_calls_trace_once():
    # Issue: "5 out of the last 11 calls to <function _stable_hits> triggered tf.function retracing". Each traced
    # function is traced once per code length and label form, whatever the numbers of queries and database
    # items, the top k, the block size and the number of rank cut-offs.
    from tfhash.metrics import hamming, retrieval

    rng = np.random.default_rng(26)
    for num_queries, num_db, block in [(3, 20, None), (11, 37, 4), (26, 50, None), (7, 64, 3)]:
        single_label = clustered_problem(rng, num_queries, num_db, 11)
        for problem in [single_label, multi_label_problem(rng, num_queries, num_db, 11)]:
            for top_k, ties in [(None, "average"), (num_db // 2, "stable"), (None, "stable")]:
                average_precision(*problem, top_k=top_k, ties=ties, query_block_size=block)
            precision_recall_by_rank(*problem, list(range(1, num_queries % 4 + 2)), ties="stable")
            hamming_distance(problem[0], problem[1])
    functions = [hamming._hamming, *retrieval._TRACED.values()]
    assert len(functions) >= 8  # keys with / without distances × label forms, histograms, top and full ranking
    assert [function.experimental_get_tracing_count() for function in functions] == [1] * len(functions)


# ------------------------------------------------------------------------------------------ average tie rule


def tiny_problems():
    rng = np.random.default_rng(7)
    for trial in range(6):
        bits = 2 if trial % 2 else 3
        if trial < 4:
            yield clustered_problem(rng, 4, 8, bits, classes=2, flip=0.3)
        else:
            yield multi_label_problem(rng, 4, 8, bits, classes=3)


@pytest.mark.parametrize("problem_index", range(6))
def test_average_ties_equal_enumeration_of_all_tie_orders(problem_index):
    problem = list(tiny_problems())[problem_index]
    for top_k in [1, 2, 3, 5, 7, 8, None]:
        np.testing.assert_allclose(
            average_precision(*problem, top_k=top_k, ties="average").numpy(),
            reference.expected_average_precision(*problem, top_k=top_k),
            rtol=0,
            atol=1e-12,
            err_msg=f"top_k={top_k}",
        )


def test_average_ties_hand_worked_single_group():
    # 4 tied items, 2 relevant: the 6 placements of the relevant pair give APs averaging to 0.7916…
    codes = np.ones((4, 2))
    placements = [(1, 2), (1, 3), (1, 4), (2, 3), (2, 4), (3, 4)]
    expected = np.mean([(1 / a + 2 / b) / 2 for a, b in placements])
    ap = average_precision(codes[:1], codes, [1], [0, 1, 1, 0], ties="average").numpy()
    np.testing.assert_allclose(ap, [expected], atol=1e-15)


def test_average_ties_do_not_depend_on_database_order_but_stable_ties_do():
    rng = np.random.default_rng(3)
    query, database, query_labels, db_labels = clustered_problem(rng, 40, 300, 6)
    order = rng.permutation(len(database))
    for top_k in [None, 50]:
        original = average_precision(query, database, query_labels, db_labels, top_k=top_k).numpy()
        permuted = average_precision(query, database[order], query_labels, db_labels[order], top_k=top_k).numpy()
        np.testing.assert_allclose(original, permuted, atol=1e-12)
    stable = average_precision(query, database, query_labels, db_labels, ties="stable").numpy()
    stable_permuted = average_precision(query, database[order], query_labels, db_labels[order], ties="stable")
    assert np.abs(stable - stable_permuted.numpy()).max() > 1e-3


def test_average_equals_stable_without_ties():
    # Distinct distances per query: database item j sits at distance j from the all-ones query.
    bits = 12
    database = np.ones((bits + 1, bits))
    for j in range(bits + 1):
        database[j, :j] = -1
    query = np.ones((1, bits))
    labels = np.random.default_rng(0).integers(0, 2, bits + 1)
    for top_k in [1, 5, None]:
        np.testing.assert_allclose(
            average_precision(query, database, [1], labels, top_k=top_k).numpy(),
            average_precision(query, database, [1], labels, top_k=top_k, ties="stable").numpy(),
            atol=1e-14,
        )


@pytest.mark.parametrize("ties", ["average", "stable"])
def test_query_without_relevant_items_contributes_zero(ties):
    codes = np.array([[1, 1], [1, -1], [-1, -1]])
    ap = average_precision(codes, codes, [0, 1, 5], [0, 1, 1], ties=ties).numpy()
    assert ap[2] == 0.0
    assert ap[0] == 1.0
    mean = mean_average_precision(codes, codes, [0, 1, 5], [0, 1, 1], ties=ties).numpy()
    np.testing.assert_allclose(mean, ap.mean())


@pytest.mark.parametrize("ties", ["average", "stable"])
def test_packed_codes_and_block_sizes_give_identical_results(ties):
    rng = np.random.default_rng(5)
    query, database, query_labels, db_labels = clustered_problem(rng, 23, 120, 13)
    expected = average_precision(query, database, query_labels, db_labels, top_k=30, ties=ties).numpy()
    packed = average_precision(pack_codes(query), pack_codes(database), query_labels, db_labels, top_k=30, ties=ties)
    np.testing.assert_array_equal(packed.numpy(), expected)
    for block in [1, 7, 100]:
        blocked = average_precision(
            query, database, query_labels, db_labels, top_k=30, ties=ties, query_block_size=block
        )
        np.testing.assert_array_equal(blocked.numpy(), expected)


def test_top_k_beyond_database_means_all():
    rng = np.random.default_rng(9)
    problem = clustered_problem(rng, 10, 40, 5)
    for ties in ["average", "stable"]:
        np.testing.assert_array_equal(
            average_precision(*problem, top_k=1000, ties=ties).numpy(),
            average_precision(*problem, top_k=None, ties=ties).numpy(),
        )


# --------------------------------------------------------------------------------- precision and PR curves


def test_precision_recall_by_rank_stable_matches_reference():
    rng = np.random.default_rng(11)
    query, database, query_labels, db_labels = clustered_problem(rng, 20, 90, 6)
    distances, rel = reference.hamming(query, database), reference.relevance(query_labels, db_labels)
    ranks = [1, 10, 89, 90]
    hits = np.array([[rel[q][reference.stable_ranking(distances[q])][:n].sum() for n in ranks] for q in range(20)])
    totals = rel.sum(1, keepdims=True)
    precision, recall = precision_recall_by_rank(query, database, query_labels, db_labels, ranks, ties="stable")
    np.testing.assert_allclose(precision.numpy(), (hits / np.array(ranks)).mean(0), atol=1e-12)
    np.testing.assert_allclose(recall.numpy(), np.where(totals > 0, hits / np.maximum(totals, 1), 0).mean(0))
    np.testing.assert_allclose(
        precision_at_n(query, database, query_labels, db_labels, n=10, ties="stable").numpy(), precision.numpy()[1]
    )


def test_precision_recall_by_rank_stable_unsorted_repeated_ranks_multi_label():
    rng = np.random.default_rng(27)
    query, database, query_labels, db_labels = multi_label_problem(rng, 14, 70, 3)
    distances, rel = reference.hamming(query, database), reference.relevance(query_labels, db_labels)
    ranks = [70, 5, 1, 5, 33]
    hits = np.array([[rel[q][reference.stable_ranking(distances[q])][:n].sum() for n in ranks] for q in range(14)])
    totals = rel.sum(1, keepdims=True)
    precision, recall = precision_recall_by_rank(
        query, database, query_labels, db_labels, ranks, ties="stable", query_block_size=4
    )
    np.testing.assert_allclose(precision.numpy(), (hits / np.array(ranks)).mean(0), atol=1e-12)
    np.testing.assert_allclose(recall.numpy(), np.where(totals > 0, hits / np.maximum(totals, 1), 0).mean(0))


@pytest.mark.parametrize("problem_index", [0, 4])
def test_precision_at_n_average_equals_enumeration(problem_index):
    problem = list(tiny_problems())[problem_index]
    for n in [1, 3, 8]:
        expected = reference.expected_hits_at(*problem, rank=n) / n
        np.testing.assert_allclose(precision_at_n(*problem, n=n).numpy(), expected.mean(), atol=1e-12)


def test_precision_recall_by_radius_matches_reference():
    rng = np.random.default_rng(12)
    query, database, query_labels, db_labels = multi_label_problem(rng, 15, 70, 5)
    distances, rel = reference.hamming(query, database), reference.relevance(query_labels, db_labels)
    precision, recall = precision_recall_by_radius(query, database, query_labels, db_labels)
    assert precision.shape == (6,)
    for radius in range(6):
        inside = distances <= radius
        hits = (inside & rel).sum(1)
        expected_precision = np.where(inside.sum(1) > 0, hits / np.maximum(inside.sum(1), 1), 0.0)
        expected_recall = np.where(rel.sum(1) > 0, hits / np.maximum(rel.sum(1), 1), 0.0)
        np.testing.assert_allclose(precision.numpy()[radius], expected_precision.mean(), atol=1e-12)
        np.testing.assert_allclose(recall.numpy()[radius], expected_recall.mean(), atol=1e-12)
    np.testing.assert_allclose(
        precision_within_radius(query, database, query_labels, db_labels).numpy(), precision.numpy()[2]
    )


def test_distance_histograms_count_items_and_relevant_items():
    rng = np.random.default_rng(13)
    query, database, query_labels, db_labels = clustered_problem(rng, 6, 50, 4)
    counts, relevant = distance_histograms(query, database, query_labels, db_labels)
    distances, rel = reference.hamming(query, database), reference.relevance(query_labels, db_labels)
    for d in range(5):
        np.testing.assert_array_equal(counts.numpy()[:, d], (distances == d).sum(1))
        np.testing.assert_array_equal(relevant.numpy()[:, d], ((distances == d) & rel).sum(1))


# ------------------------------------------------------------------------------------------------ bad input


def test_bad_input_is_named():
    codes = np.array([[1, -1, 1, 1], [-1, 1, 1, 1], [1, 1, -1, -1]])
    labels = [0, 1, 2]
    cases = [
        (dict(query_codes=np.ones((3, 5))), "code length"),
        (dict(db_codes=codes * 0.5), "db_codes"),
        (dict(query_codes=(codes + 1) / 2), "query_codes"),
        (dict(query_labels=[0, 1]), "query_labels"),
        (dict(db_labels=np.ones((3, 2, 2))), "db_labels"),
        (dict(query_codes=np.ones((0, 4)), query_labels=[]), "empty"),
        (dict(db_codes=np.ones((0, 4)), db_labels=[]), "empty"),
        (dict(top_k=0), "top_k"),
        (dict(top_k=-1), "top_k"),
        (dict(ties="random"), "ties"),
        (dict(query_codes=pack_codes(codes)), "packed"),
        (dict(query_labels=np.eye(3)), "multi-hot"),
        # Issue 12, item 11: string labels raised a TypeError about `rint`; {0, 1} bits in uint8 were unpacked.
        (dict(query_labels=np.array(["a", "b", "c"])), "`query_labels` must hold numbers"),
        (dict(db_labels=["a", "b", "c"]), "`db_labels` must hold numbers"),
        (dict(query_codes=((codes + 1) // 2).astype(np.uint8)), "`query_codes` is a uint8 matrix of only 0s"),
        (dict(db_codes=[[1, -1, 1, 1], [1, -1], [1, 1, 1, 1]]), "`db_codes` must be a rectangular matrix"),
    ]
    for overrides, message in cases:
        arguments = dict(query_codes=codes, db_codes=codes, query_labels=labels, db_labels=labels) | overrides
        with pytest.raises(ValueError, match=message):
            mean_average_precision(**arguments)


@pytest.mark.parametrize("bad", [0.5, 0.0, np.nan, 2.0])
@pytest.mark.parametrize("form", ["numpy float32", "tensor float64", "tensor bfloat16", "list"])
def test_one_bad_entry_among_many_codes_is_refused(bad, form):
    # The ±1 check reads every entry of every input form (a bfloat16 tensor has no native numpy dtype).
    codes = np.random.default_rng(32).choice([-1.0, 1.0], size=(3000, 16)).astype(np.float32)
    labels = np.zeros(len(codes), np.int64)

    def given(values):
        if form == "list":
            return values.tolist()
        if form == "numpy float32":
            return values
        return tf.constant(values, tf.float64 if form == "tensor float64" else tf.bfloat16)

    expected = mean_average_precision(codes[:3], codes, labels[:3], labels, top_k=5, ties="stable")
    np.testing.assert_array_equal(
        mean_average_precision(given(codes[:3]), given(codes), labels[:3], labels, top_k=5, ties="stable"), expected
    )
    codes[2345, 7] = bad
    with pytest.raises(ValueError, match="`db_codes` must be binary ±1 codes"):
        mean_average_precision(codes[:3], given(codes), labels[:3], labels, top_k=5)


@pytest.mark.parametrize("num_bits", [5, 64, 70])
def test_words_of_every_code_form_match_the_packed_bits(monkeypatch, num_bits):
    # ±1 codes are checked and packed by blocks of rows (here 4, over 10 rows: a partial last block), bits and
    # packed bytes directly: all equal to packing `as_bits`, and a bad entry in the last block is still refused.
    from tfhash.metrics import _inputs

    monkeypatch.setattr(_inputs, "_CHUNK_ROWS", 4)
    codes = np.random.default_rng(num_bits).choice([-1.0, 1.0], size=(10, num_bits))
    expected = _inputs.word_bits(codes > 0)
    for form in [codes, codes > 0]:
        words, length = _inputs.as_words(form, "codes")
        np.testing.assert_array_equal(words, expected)
        assert length == num_bits
    words, length = _inputs.as_words(pack_codes(codes), "codes")
    np.testing.assert_array_equal(words, _inputs.word_bits(_inputs.as_bits(pack_codes(codes), "codes")))
    assert length == 8 * -(-num_bits // 8)
    codes[9, num_bits - 1] = 0.0
    with pytest.raises(ValueError, match="`codes` must be binary ±1 codes"):
        _inputs.as_words(codes, "codes")


def test_bad_rank_and_radius_are_named():
    codes = np.ones((3, 4))
    with pytest.raises(ValueError, match="ranks"):
        precision_recall_by_rank(codes, codes, [0, 1, 2], [0, 1, 2], [4])
    with pytest.raises(ValueError, match="radius"):
        precision_within_radius(codes, codes, [0, 1, 2], [0, 1, 2], radius=-1)


def test_tiny_database_with_many_queries():
    # A one-item database: every query's AP is 1 if that item is relevant, else 0 (and blocks stay bounded).
    rng = np.random.default_rng(14)
    query = random_codes(rng, 3000, 8)
    labels = rng.integers(0, 2, 3000)
    for ties in ["average", "stable"]:
        ap = average_precision(query, np.ones((1, 8)), labels, [1], ties=ties).numpy()
        np.testing.assert_array_equal(ap, (labels == 1).astype(float))


_COMPILES_PER_PROBLEM = """
import json, os, sys
import numpy as np
from tfhash.metrics import mean_average_precision, precision_recall_by_rank

def problem(seed, num_queries, num_db):
    rng = np.random.default_rng(seed)
    prototypes = rng.choice([-1.0, 1.0], size=(5, 32))
    labels = rng.integers(0, 5, num_queries + num_db)
    codes = prototypes[labels] * np.where(rng.random((num_queries + num_db, 32)) < 0.3, -1.0, 1.0)
    return codes[:num_queries], codes[num_queries:], labels[:num_queries], labels[num_queries:]

block = json.loads(sys.argv[2])
for seed, (num_queries, num_db) in enumerate(json.loads(sys.argv[3])):
    data = problem(seed, num_queries, num_db)
    mean_average_precision(*data, query_block_size=block)
    for top_k in (200, 50, None):  # the sampled top k, the top k from the histogram, every item
        mean_average_precision(*data, top_k=top_k, ties="stable", query_block_size=block)
    precision_recall_by_rank(*data, ranks=[10, 100, 1000], ties="stable", query_block_size=block)
    print(sum(name.endswith("before_optimizations.txt") for name in os.listdir(sys.argv[1])))
"""


@pytest.mark.parametrize(
    "block, sizes",
    [
        (16, [(160, 5000)] * 3),  # the same shapes: 10 blocks of 16 queries
        (None, [(153, 3010), (155, 3020), (158, 3035)]),  # the same buckets: one block of 160, a database of 3040
    ],
    ids=["same-shapes", "same-buckets"],
)
def test_new_problems_of_the_same_padded_shapes_compile_almost_nothing_new(tmp_path, block, sizes):
    # Every XLA pass takes its variable lengths padded to buckets, so three problems of the same shapes, or of
    # sizes that pad alike, share their compilations (each metric path), but for a bucket of candidates the first
    # did not reach: an XLA dump, in a fresh process, counts them. Each compilation holds memory maps for the
    # life of the process: 710 database sizes, unpadded, crashed one (the kernel's limit of 65,530 maps). A pass
    # fed a block's candidates unpadded compiled once per block and per problem (+10 per problem for the sampled
    # top 200 alone; 3.8 s on a second NUS-WIDE-shaped problem). No value test sees either.
    dump = tmp_path / "xla"
    completed = subprocess.run(
        [sys.executable, "-c", _COMPILES_PER_PROBLEM, str(dump), json.dumps(block), json.dumps(sizes)],
        capture_output=True, text=True,
        env=os.environ | {"XLA_FLAGS": f"--xla_dump_to={dump}", "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert completed.returncode == 0, completed.stderr
    first, second, third = map(int, completed.stdout.split())
    assert first > 0 and second - first <= 2 and third - second <= 2, (first, second, third)


def random_problem(rng):
    """A query / database pair of random sizes (1–12,000 items, 1–130 bits), class ids or multi-hot labels, and
    one of four database layouts: clustered codes, uniform codes, one code for all (every item tied), or near
    items everywhere but at every s-th one (against the top k's strided sample)."""
    bits = int(rng.choice([1, 8, 13, 64, 65, 130]))
    num_db, num_queries = int(rng.choice([1, 63, 129, 1000, 4097, 12_000])), int(rng.integers(1, 60))
    layout = rng.choice(["clustered", "uniform", "constant", "aliased"])
    if layout == "clustered":
        query, database, _, _ = clustered_problem(rng, num_queries, num_db, bits, flip=rng.uniform(0.05, 0.3))
    else:
        query, database = random_codes(rng, num_queries, bits), random_codes(rng, num_db, bits)
        if layout == "constant":
            query, database = np.ones_like(query), np.ones_like(database)
        elif layout == "aliased":
            database[np.arange(num_db) % int(rng.choice([2, 8, 16])) == 0] = -1.0
            query = np.where(rng.random(query.shape) < 0.05, -1.0, 1.0)
    if rng.random() < 0.4:
        query_labels = (rng.random((num_queries, 21)) < 0.15).astype(int)
        db_labels = (rng.random((num_db, 21)) < 0.15).astype(int)
    else:
        query_labels, db_labels = rng.integers(0, 6, num_queries), rng.integers(0, 5, num_db)  # class 5: no item
    return query, database, query_labels, db_labels


@pytest.mark.slow
def test_stable_metrics_equal_a_per_query_ranking_over_random_problems():
    # Every path of the stable ranking (the sampled top k and its fallback, the top k from the histogram, every
    # item), the database's padding and a lone block's padded queries, against numpy's stable argsort per query.
    rng = np.random.default_rng(2026_12_05)
    for _ in range(30):
        query, database, query_labels, db_labels = random_problem(rng)
        num_db = len(database)
        top_k = rng.choice([1, 50, 128, 1000, num_db, None])
        depth = num_db if top_k is None else min(int(top_k), num_db)
        ranks = sorted({depth, *rng.integers(1, depth + 1, size=3).tolist()})
        block = None if rng.random() < 0.7 else int(rng.integers(1, 40))
        arguments = (query, database, query_labels, db_labels)
        ap = average_precision(*arguments, top_k=top_k, ties="stable", query_block_size=block)
        np.testing.assert_allclose(ap.numpy(), reference.stable_average_precision(*arguments, top_k=depth), atol=1e-12)
        precision, _ = precision_recall_by_rank(*arguments, ranks=ranks, ties="stable", query_block_size=block)
        distances, relevant = reference.hamming(query, database), reference.relevance(query_labels, db_labels)
        ranked = np.take_along_axis(relevant, np.argsort(distances, axis=1, kind="stable"), axis=1)
        expected = [ranked[:, :rank].sum(1).mean() / rank for rank in ranks]
        np.testing.assert_allclose(precision.numpy(), expected, atol=1e-12)
