"""The retrieval figures of a set of codes in one dict: what the recipes print and record in metrics.json."""

import math
import re

import numpy as np
import tensorflow as tf

from tfhash._validation import check_int
from tfhash.metrics._inputs import as_bit_pair, as_label_pair
from tfhash.metrics.code_statistics import bit_balance, correlation_ratio, entropy_ratio, fisher_score
from tfhash.metrics.retrieval import (
    mean_average_precision,
    precision_recall_by_radius,
    precision_recall_by_rank,
    precision_within_radius,
)

_ALSO_REPORTS = re.compile(r"(mAP|precision)@([1-9][0-9]*)")


def as_json_float(value):
    """``value`` as a float rounded to 6 decimals, or None where it is NaN or infinite (JSON has neither).

    Example:

    >>> as_json_float(np.float64(0.12345678)), as_json_float(float("nan"))
    (0.123457, None)
    """
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else round(value, 6)


def _json_floats(values):
    return [as_json_float(v) for v in np.asarray(values)]


def _check_also_reports(also_reports):
    if isinstance(also_reports, str):
        raise ValueError(f"`also_reports` must be a sequence of names, got the string {also_reports!r}.")
    items = tuple(also_reports)
    for item in items:
        if not isinstance(item, str) or not _ALSO_REPORTS.fullmatch(item):
            raise ValueError(
                f"`also_reports` items must be 'mAP@N' or 'precision@N' (N a positive integer), got {item!r}."
            )
    return items


def retrieval_report(
    query_codes, db_codes, query_labels, db_labels, top_k=None, precision_at=(100, 1000), also_reports=()
):
    """Retrieval figures and code statistics of one set of query and database codes, as a JSON-ready dict.

    The figures every tfhash recipe prints and records (``metrics.json``), each computed by the metric
    functions of `tfhash.metrics`:

    - ``"map"``, ``"map_stable"``: `mean_average_precision` at ``top_k`` with ``ties="average"`` (the expected
      value over orders of tied items) and ``ties="stable"`` (ties ranked by database index);
    - ``"also"``: ``{"mAP@N": mAP@N}`` for each ``"mAP@N"`` of ``also_reports`` with N < n_db (ties average);
    - ``"precision_at"``: ``{"N": P@N}`` (ties average) for each N of ``precision_at`` and each
      ``"precision@N"`` of ``also_reports`` with N ≤ n_db, keys sorted by N (str keys, as in JSON);
    - ``"precision_radius_2"``: `precision_within_radius` 2;
    - ``"pr_curve_by_radius"``: ``{"precision": [...], "recall": [...]}``, `precision_recall_by_radius`,
      entry r for Hamming radius r = 0..K;
    - ``"fisher_score"``, ``"entropy_ratio"``, ``"correlation_ratio"`` (None for one-bit codes): the HQT
      paper's statistics of the database codes with their class labels (None for multi-hot labels: they need one class
      per sample);
    - ``"bit_balance"``: the mean over bits of `bit_balance` of the database codes (fraction of +1).

    The figures are Python floats; the curve and the code statistics are rounded to 6 decimals
    (`as_json_float`), None where undefined (NaN).

    Args:
        query_codes: (n_query, K) ±1 codes (any real dtype), bool bits, or packed uint8 codes.
        db_codes: (n_db, K) codes in the same form.
        query_labels: (n_query,) integer class ids or (n_query, classes) multi-hot matrix.
        db_labels: database labels in the same form.
        top_k: the cut-off of ``"map"`` (mAP@top_k); None, or a value ≥ n_db, ranks the whole database
            (mAP@all).
        precision_at: positive integers N of the precision@N figures; those above n_db are left out.
        also_reports: further figures the protocol's paper reports, ``"mAP@N"`` or ``"precision@N"``
            (`tfhash.data.Protocol.also_reports`); those beyond the database are left out.

    Returns:
        dict with the keys listed above.

    Raises:
        ValueError: codes or labels of mismatched sizes, forms or code lengths, non-binary codes, a bad
            ``top_k``, ``precision_at`` or ``also_reports`` item (the message names the argument).

    Example:

    >>> codes = np.array([[1, 1], [1, -1], [-1, -1]])
    >>> report = retrieval_report(codes, codes, [0, 0, 1], [0, 0, 1], precision_at=(1, 2))
    >>> report["map_stable"], report["precision_at"]
    (1.0, {'1': 1.0, '2': 0.75})

    Reference:
        Kim & Ryu, "Hyper-Quantization Tree", BMVC 2024, §5.2–5.3 (Fisher score, entropy and correlation
        ratios); McSherry & Najork, ECIR 2008 (tie-aware mAP).
    """
    check_int(top_k, "top_k", minimum=1, allow_none=True)
    if isinstance(precision_at, (str, int)):
        raise ValueError(f"`precision_at` must be a sequence of positive integers, got {precision_at!r}.")
    precision_at = [check_int(n, "precision_at", minimum=1) for n in precision_at]
    also_reports = _check_also_reports(also_reports)
    # Validated (and unpacked) once; the metric functions then all read the same bits.
    query_codes, db_codes = as_bit_pair(query_codes, db_codes)
    num_db, bits = db_codes.shape
    _, _, multi_label = as_label_pair(query_labels, db_labels, query_codes.shape[0], num_db)
    arguments = (query_codes, db_codes, query_labels, db_labels)

    top_k = None if top_k is None or top_k >= num_db else top_k
    figures = {
        "map": float(mean_average_precision(*arguments, top_k=top_k, ties="average")),
        "map_stable": float(mean_average_precision(*arguments, top_k=top_k, ties="stable")),
    }
    extra_maps, ranks = {}, sorted({n for n in precision_at if n <= num_db})
    for item in also_reports:
        kind, _, value = item.partition("@")
        if kind == "mAP" and int(value) < num_db:
            extra_maps[item] = float(mean_average_precision(*arguments, top_k=int(value)))
        elif kind == "precision" and int(value) <= num_db:
            ranks = sorted({*ranks, int(value)})
    figures["also"] = extra_maps
    if ranks:
        precision, _ = precision_recall_by_rank(*arguments, ranks=ranks)
        figures["precision_at"] = {str(n): float(p) for n, p in zip(ranks, precision.numpy())}
    else:
        figures["precision_at"] = {}
    figures["precision_radius_2"] = float(precision_within_radius(*arguments, radius=2))
    precision, recall = precision_recall_by_radius(*arguments)
    figures["pr_curve_by_radius"] = {"precision": _json_floats(precision), "recall": _json_floats(recall)}
    if multi_label:
        figures.update(fisher_score=None, entropy_ratio=None, correlation_ratio=None)
    else:
        figures["fisher_score"] = as_json_float(fisher_score(db_codes, db_labels))
        figures["entropy_ratio"] = as_json_float(entropy_ratio(db_codes, db_labels))
        figures["correlation_ratio"] = (
            as_json_float(correlation_ratio(db_codes, db_labels)) if bits > 1 else None
        )
    figures["bit_balance"] = as_json_float(tf.reduce_mean(tf.abs(bit_balance(db_codes))))
    return figures
