import json
import os

import numpy as np
import pytest

from tfhash._atomic import write_atomically, write_json, write_text


def test_write_json_is_indented_with_a_final_newline_and_refuses_nan(tmp_path):
    path = tmp_path / "out" / "metrics.json"
    assert write_json(path, {"map": 0.5, "rows": [1, 2]}) == path
    assert path.read_text() == json.dumps({"map": 0.5, "rows": [1, 2]}, indent=2) + "\n"
    with pytest.raises(ValueError, match="JSON"):
        write_json(path, {"map": float("nan")})
    assert json.loads(path.read_text()) == {"map": 0.5, "rows": [1, 2]}  # the previous file is intact
    assert os.listdir(path.parent) == ["metrics.json"]


def test_file_object_writers_and_failures_leave_no_temporaries(tmp_path):
    path = tmp_path / "features.npy"
    write_atomically(path, lambda file: np.save(file, np.arange(3)), mode="wb")  # np.save adds no .npy suffix
    np.testing.assert_array_equal(np.load(path), np.arange(3))
    write_text(tmp_path / "note.txt", "é\n")
    assert (tmp_path / "note.txt").read_bytes() == "é\n".encode()

    def fails(file):
        file.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(path, fails, mode="wb")
    np.testing.assert_array_equal(np.load(path), np.arange(3))
    assert sorted(os.listdir(tmp_path)) == ["features.npy", "note.txt"]
