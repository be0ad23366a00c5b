"""Slow, obviously-correct numpy references for the retrieval metrics, written from their definitions."""

import itertools

import numpy as np


def relevance(query_labels, db_labels):
    query_labels, db_labels = np.asarray(query_labels), np.asarray(db_labels)
    if query_labels.ndim == 1:
        return query_labels[:, None] == db_labels[None, :]
    return (query_labels @ db_labels.T) > 0


def hamming(query_codes, db_codes):
    query_codes, db_codes = np.asarray(query_codes), np.asarray(db_codes)
    return (query_codes[:, None, :] != db_codes[None, :, :]).sum(-1)


def ap_of_ranking(ranked_relevance, top_k=None):
    """AP@k of one ranked relevance vector: mean precision at the relevant ranks within the top k."""
    ranked = np.asarray(ranked_relevance, dtype=float)[: (len(ranked_relevance) if top_k is None else top_k)]
    hits, total = 0.0, 0.0
    for position, is_relevant in enumerate(ranked, start=1):
        if is_relevant:
            hits += 1
            total += hits / position
    return total / hits if hits else 0.0


def stable_ranking(distances):
    return np.argsort(distances, kind="stable")


def stable_average_precision(query_codes, db_codes, query_labels, db_labels, top_k=None):
    distances, rel = hamming(query_codes, db_codes), relevance(query_labels, db_labels)
    return np.array([ap_of_ranking(rel[q][stable_ranking(distances[q])], top_k) for q in range(len(distances))])


def tie_orders(distances):
    """Every ranking of the database that sorts by distance, over all orders of the tied items."""
    groups = [np.flatnonzero(distances == d) for d in np.unique(distances)]
    for orders in itertools.product(*(itertools.permutations(group) for group in groups)):
        yield np.concatenate(orders)


def expected_average_precision(query_codes, db_codes, query_labels, db_labels, top_k=None):
    """AP@k averaged over every order of tied items, by enumeration (tiny cases only)."""
    distances, rel = hamming(query_codes, db_codes), relevance(query_labels, db_labels)
    return np.array(
        [np.mean([ap_of_ranking(rel[q][order], top_k) for order in tie_orders(distances[q])]) for q in range(len(rel))]
    )


def expected_hits_at(query_codes, db_codes, query_labels, db_labels, rank):
    """Relevant items in the top `rank`, averaged over every order of tied items (tiny cases only)."""
    distances, rel = hamming(query_codes, db_codes), relevance(query_labels, db_labels)
    return np.array(
        [np.mean([rel[q][order][:rank].sum() for order in tie_orders(distances[q])]) for q in range(len(rel))]
    )
