import json

import numpy as np

from tfhash.recipes import quickstart


def test_quickstart_trains_codes_better_than_lsh_and_writes_results(tmp_path):
    record = quickstart.main(["--bits", "16", "--epochs", "10", "--output", str(tmp_path), "--verbose", "0"])
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written == json.loads(json.dumps(record))
    assert written["seed"] == 0 and "tensorflow" in written["versions"]
    row = written["results"][0]
    # Learned codes beat the data-independent baseline by a wide margin on this split (0.6 vs 0.3 at 30 epochs).
    assert row["bi_half"]["map_all"] > row["lsh"]["map_all"] + 0.1
    assert (tmp_path / "bi_half_16bits.keras").exists()
    assert len(row["map_all_during_training"]) == 5  # every 10 // 5 = 2 epochs


def test_quickstart_split_is_seeded_and_disjoint():
    (xq, yq), (xd, yd) = quickstart.split_digits(3)
    (xq2, _), _ = quickstart.split_digits(3)
    np.testing.assert_array_equal(xq, xq2)
    assert len(xq) == 300 and len(xd) == 1497
    assert np.bincount(yq).tolist() == [30] * 10
