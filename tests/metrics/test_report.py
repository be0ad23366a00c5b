import numpy as np
import pytest

from tests.metrics import reference
from tfhash.codes import pack_codes
from tfhash.metrics import (
    bit_balance,
    correlation_ratio,
    entropy_ratio,
    fisher_score,
    mean_average_precision,
    precision_recall_by_radius,
    retrieval_report,
)

KEYS = {
    "map",
    "map_stable",
    "also",
    "precision_at",
    "precision_radius_2",
    "pr_curve_by_radius",
    "fisher_score",
    "entropy_ratio",
    "correlation_ratio",
    "bit_balance",
}

# Small enough to check by hand and by enumerating tie orders: 3 queries, 5 database items, 3 bits.
QUERY = np.array([[1, 1, 1], [-1, -1, 1], [1, -1, -1]])
DATABASE = np.array([[1, 1, 1], [1, 1, -1], [-1, -1, 1], [-1, -1, -1], [1, -1, -1]])
QUERY_LABELS = np.array([0, 1, 0])
DB_LABELS = np.array([0, 0, 1, 1, 0])


def test_figures_against_the_numpy_reference_and_the_metric_functions():
    report = retrieval_report(
        QUERY, DATABASE, QUERY_LABELS, DB_LABELS, top_k=3, precision_at=(1, 2, 9), also_reports=("mAP@2",)
    )
    assert set(report) == KEYS
    arguments = (QUERY, DATABASE, QUERY_LABELS, DB_LABELS)
    np.testing.assert_allclose(report["map"], reference.expected_average_precision(*arguments, top_k=3).mean())
    np.testing.assert_allclose(report["map_stable"], reference.stable_average_precision(*arguments, top_k=3).mean())
    np.testing.assert_allclose(
        report["also"]["mAP@2"], reference.expected_average_precision(*arguments, top_k=2).mean()
    )
    # P@9 is beyond the 5 database items: left out.
    assert list(report["precision_at"]) == ["1", "2"]
    for rank in (1, 2):
        expected = reference.expected_hits_at(*arguments, rank).mean() / rank
        np.testing.assert_allclose(report["precision_at"][str(rank)], expected)
    # By hand: within radius 2, query 0 retrieves items 0, 1, 4 (class 0) and 2 (class 1): 3/4; query 1 items
    # 2, 3 (class 1) and 0, 4 (class 0): 2/4; query 2 every item, 3 of class 0: 3/5.
    np.testing.assert_allclose(report["precision_radius_2"], (3 / 4 + 2 / 4 + 3 / 5) / 3)
    precision, recall = precision_recall_by_radius(*arguments)
    assert len(report["pr_curve_by_radius"]["precision"]) == 4  # radius 0..K
    np.testing.assert_allclose(report["pr_curve_by_radius"]["precision"], precision.numpy(), atol=1e-6)
    np.testing.assert_allclose(report["pr_curve_by_radius"]["recall"], recall.numpy(), atol=1e-6)
    np.testing.assert_allclose(report["fisher_score"], float(fisher_score(DATABASE, DB_LABELS)), atol=1e-6)
    np.testing.assert_allclose(report["entropy_ratio"], float(entropy_ratio(DATABASE, DB_LABELS)), atol=1e-6)
    np.testing.assert_allclose(
        report["correlation_ratio"], float(correlation_ratio(DATABASE, DB_LABELS)), atol=1e-6
    )
    np.testing.assert_allclose(report["bit_balance"], float(np.mean(bit_balance(DATABASE))), atol=1e-6)


def test_top_k_at_or_beyond_the_database_is_map_at_all_and_also_reports_beyond_it_are_left_out():
    arguments = (QUERY, DATABASE, QUERY_LABELS, DB_LABELS)
    at_all = retrieval_report(*arguments, also_reports=("mAP@5", "precision@5", "precision@6"))
    np.testing.assert_allclose(at_all["map"], float(mean_average_precision(*arguments)))
    assert retrieval_report(*arguments, top_k=5)["map"] == at_all["map"]
    assert at_all["also"] == {}  # mAP@5 is mAP@all: not repeated
    assert list(at_all["precision_at"]) == ["5"]  # 100 and 1000 (the defaults) and 6 exceed the database


def test_packed_codes_give_the_same_report():
    rng = np.random.default_rng(0)
    query, database = rng.choice([-1, 1], (7, 16)), rng.choice([-1, 1], (30, 16))
    labels = rng.integers(0, 3, 7), rng.integers(0, 3, 30)
    plain = retrieval_report(query, database, *labels, precision_at=(10,))
    assert retrieval_report(pack_codes(query), pack_codes(database), *labels, precision_at=(10,)) == plain


def test_multi_hot_labels_leave_the_class_statistics_undefined():
    labels = np.array([[1, 0], [0, 1], [1, 1]])
    report = retrieval_report(QUERY, QUERY, labels, labels, precision_at=(2,))
    assert report["fisher_score"] is report["entropy_ratio"] is report["correlation_ratio"] is None
    assert 0 <= report["map"] <= 1


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(query_labels=[0, 1]), "`query_labels` has 2 rows but there are 3 codes"),
        (dict(db_codes=DATABASE[:4]), "`db_labels` has 5 rows but there are 4 codes"),
        (dict(db_codes=DATABASE[:, :2]), "same code length"),
        (dict(top_k=0), "`top_k` must be an integer >= 1"),
        (dict(top_k=2.5), "`top_k` must be an integer"),
        (dict(top_k=True), "`top_k` must be an integer"),
        (dict(precision_at=(0,)), "`precision_at` must be an integer >= 1"),
        (dict(precision_at=100), "`precision_at` must be a sequence"),
        (dict(also_reports=("NDCG@10",)), "`also_reports` items must be 'mAP@N' or 'precision@N'"),
        (dict(also_reports="mAP@10"), "`also_reports` must be a sequence"),
        (dict(query_labels=np.array(["cat", "dog", "cat"])), "`query_labels` must hold numbers"),
    ],
)
def test_wrong_calls_are_named(overrides, match):
    arguments = dict(query_codes=QUERY, db_codes=DATABASE, query_labels=QUERY_LABELS, db_labels=DB_LABELS)
    with pytest.raises(ValueError, match=match):
        retrieval_report(**(arguments | overrides))
