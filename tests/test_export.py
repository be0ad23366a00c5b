"""SavedModel export (`tfhash.export`), `tfhash.load_encoder` and ``python -m tfhash encode``.

Two models cover both kinds of signature: a head-only Bi-half model (features in) and a GreedyHash model with
a small CNN (uint8 images in, batch norm inside the graph), with 21 bits so that the packed codes carry
padding bits, and an HQT regulariser and a built optimizer whose state must stay out of the SavedModel.
Subprocesses are slow to start, so only two are used: one with TensorFlow alone, one running the command line.
"""

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfhash
from tfhash.__main__ import main as cli_main
from tfhash.codes import pack_codes
from tfhash.export import METADATA_FILE as METADATA_NAME
from tfhash.export import export_encoder, load_encoder
from tfhash.serving import ServingInterface

ROOT = Path(__file__).resolve().parents[1]
BITS = 21


@pytest.fixture(scope="module")
def head_only(tmp_path_factory):
    model = tfhash.models.BiHalfHasher(16, feature_size=32, seed=0)
    path = tmp_path_factory.mktemp("head_only") / "bi_half"
    model.export(path, verbose=False)
    return model, path


@pytest.fixture(scope="module")
def image_model(tmp_path_factory):
    backbone = tfhash.backbones.get("small_cnn", trainable=True, image_size=28, channels=1)
    hqt = tfhash.models.HQTRegularizer(1000)
    model = tfhash.models.GreedyHasher(BITS, backbone=backbone, hqt=hqt, seed=0)
    model.compile(optimizer=keras.optimizers.Adam())
    model.optimizer.build(model.trainable_variables)  # optimizer state exists: it must not be exported
    path = tmp_path_factory.mktemp("image_model") / "greedy"
    export_encoder(model, path, verbose=False)
    return model, path


def images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 28, 28, 1), dtype=np.uint8)


def features(n, width, seed=0):
    return np.random.default_rng(seed).normal(size=(n, width)).astype(np.float32)


def test_head_only_round_trip(head_only):
    model, path = head_only
    x = features(70, 32)
    expected = model.encode(x).numpy()
    encoder = tfhash.load_encoder(path)
    attributes = (encoder.num_bits, encoder.feature_size, encoder.image_shape, encoder.bitorder)
    assert attributes == (16, 32, None, "big")
    assert encoder.metadata["model_class"] == "BiHalfHasher"
    assert encoder.metadata["tfhash_version"] == tfhash.__version__
    assert set(encoder.saved_model.signatures) == {"serving_default", "encode_features"}
    for batch_size in (1, 7, 256):  # any batch size, a last partial batch included
        np.testing.assert_array_equal(encoder.encode_features(x, batch_size=batch_size), expected)
    np.testing.assert_array_equal(encoder.encode_features(x, packed=True), pack_codes(expected).numpy())
    out = encoder.saved_model.signatures["serving_default"](features=tf.constant(x))
    np.testing.assert_array_equal(out["codes"], expected)
    assert out["codes"].dtype == tf.float32 and out["packed"].dtype == tf.uint8
    with pytest.raises(ValueError, match="no backbone.*encode_features"):
        encoder.encode(images(2))


def test_image_model_round_trip_and_padding(image_model):
    model, path = image_model
    x = images(45)
    expected = model.encode(x).numpy()
    assert set(np.unique(expected)) == {-1.0, 1.0}
    encoder = load_encoder(path)
    assert encoder.image_shape == (28, 28, 1) and encoder.feature_size == 256 and encoder.num_bits == BITS
    for batch_size in (1, 16, 100):
        np.testing.assert_array_equal(encoder.encode(x, batch_size=batch_size), expected)
    packed = encoder.encode(x, packed=True)
    assert packed.shape == (45, 3) and packed.dtype == np.uint8
    np.testing.assert_array_equal(packed, pack_codes(expected).numpy())
    np.testing.assert_array_equal(packed, np.packbits(expected > 0, axis=-1))  # padding bits are 0
    # Features through the head alone give the same codes as images through the whole model.
    backbone_features = model.features(x).numpy()
    np.testing.assert_array_equal(encoder.encode_features(backbone_features, batch_size=10), expected)
    # Iterables of batches: a generator, and a dataset of (images, index) pairs as the pipelines yield them.
    np.testing.assert_array_equal(encoder.encode(iter([x[:20], x[20:]])), expected)
    dataset = tf.data.Dataset.from_tensor_slices((x, np.arange(45))).batch(8)
    np.testing.assert_array_equal(encoder.encode(dataset, packed=True), packed)
    assert encoder.encode(x[:0]).shape == (0, BITS) and encoder.encode(x[:0], packed=True).shape == (0, 3)


def test_training_state_is_not_exported(image_model):
    model, path = image_model
    saved = tf.train.load_checkpoint(str(path / "variables" / "variables")).get_variable_to_shape_map()
    shapes = sorted(tuple(shape) for name, shape in saved.items() if name != "_CHECKPOINTABLE_OBJECT_GRAPH")
    inference = model.backbone.variables + model.head.variables  # the sign binarizer has none
    assert shapes == sorted(tuple(v.shape) for v in inference)
    assert (1000, BITS) not in shapes  # the HQT pseudo bits
    assert len(model.variables) > len(inference) and len(model.optimizer.variables) > 0


@pytest.mark.slow
def test_tensorflow_alone_loads_both_models(head_only, image_model, tmp_path):
    """A process that never imports tfhash runs the signatures and reads the metadata."""
    x_features, x_images = features(9, 32), images(9)
    np.save(tmp_path / "features.npy", x_features)
    np.save(tmp_path / "images.npy", x_images)
    script = textwrap.dedent(
        """
        import json, sys
        import numpy as np
        import tensorflow as tf

        out = {}
        for name, path, key, inputs in [("head", sys.argv[1], "features", "features.npy"),
                                        ("image", sys.argv[2], "images", "images.npy")]:
            loaded = tf.saved_model.load(path)
            x = np.load(inputs)
            serve = loaded.signatures["serving_default"]
            full = serve(**{key: tf.constant(x)})
            parts = [serve(**{key: tf.constant(x[i:j])}) for i, j in ((0, 1), (1, 9))]
            for k in ("codes", "packed"):
                assert np.array_equal(np.concatenate([p[k] for p in parts]), full[k])
            metadata = json.loads(tf.io.read_file(loaded.metadata_file.asset_path).numpy())
            out[name] = {"codes": full["codes"].numpy().tolist(), "packed": full["packed"].numpy().tolist(),
                         "signatures": sorted(loaded.signatures), "num_bits": metadata["num_bits"]}
        assert "tfhash" not in sys.modules
        print(json.dumps(out))
        """
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-c", script, str(head_only[1]), str(image_model[1])]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    for name, (model, _), x in (("head", head_only, x_features), ("image", image_model, x_images)):
        expected = model.encode(x).numpy()
        np.testing.assert_array_equal(np.array(out[name]["codes"], np.float32), expected)
        np.testing.assert_array_equal(np.array(out[name]["packed"], np.uint8), pack_codes(expected).numpy())
        assert out[name]["signatures"] == ["encode_features", "serving_default"]
        assert out[name]["num_bits"] == model.num_bits


def test_overwrite_and_atomic_export(head_only, tmp_path, monkeypatch):
    model, _ = head_only
    x = features(10, 32)
    target = tmp_path / "model"
    (target).mkdir()  # an empty directory may be replaced
    export_encoder(model, target, verbose=False)
    with pytest.raises(ValueError, match="already holds a SavedModel: pass overwrite=True"):
        export_encoder(model, target, verbose=False, bitorder="little")
    assert load_encoder(target).bitorder == "big"
    export_encoder(model, target, verbose=False, bitorder="little", overwrite=True)
    encoder = load_encoder(target)
    assert encoder.bitorder == "little"
    little = pack_codes(model.encode(x), bitorder="little").numpy()
    np.testing.assert_array_equal(encoder.encode_features(x, packed=True), little)

    # A failure while writing leaves the existing model untouched and no temporary directory behind.
    def interrupted_save(obj, export_dir, **kwargs):
        (Path(export_dir) / "saved_model.pb").write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(tf.saved_model, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        export_encoder(model, target, verbose=False, overwrite=True)
    with pytest.raises(KeyboardInterrupt):
        export_encoder(model, tmp_path / "new", verbose=False)
    monkeypatch.undo()
    assert load_encoder(target).bitorder == "little"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]

    (tmp_path / "file").write_text("not a model")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "data.txt").write_text("keep me")
    for path in ("file", "folder"):
        with pytest.raises(ValueError, match="not a SavedModel: refusing to replace it"):
            export_encoder(model, tmp_path / path, verbose=False, overwrite=True)
    assert (tmp_path / "folder" / "data.txt").read_text() == "keep me"


def test_export_argument_errors(head_only, tmp_path):
    model, _ = head_only
    with pytest.raises(ValueError, match="must be a tfhash.models.Hasher"):
        export_encoder(keras.Sequential([keras.layers.Dense(4)]), tmp_path / "m")
    with pytest.raises(ValueError, match="`bitorder` must be 'big' or 'little'"):
        export_encoder(model, tmp_path / "m", bitorder="middle")
    with pytest.raises(ValueError, match="`overwrite` must be a bool"):
        export_encoder(model, tmp_path / "m", overwrite="yes")

    class Unbuilt(tfhash.models.Hasher):
        def __init__(self):
            super().__init__(4, feature_size=3)
            self.head = keras.layers.Dense(4)

    with pytest.raises(ValueError, match="is not built"):
        export_encoder(Unbuilt(), tmp_path / "m")
    with pytest.raises(ValueError, match="writes format='tf_saved_model' only"):
        model.export(tmp_path / "m", format="onnx")
    assert not (tmp_path / "m").exists()


def test_encoder_input_errors(head_only, image_model, tmp_path):
    encoder = load_encoder(image_model[1])
    with pytest.raises(ValueError, match=r"`images` must be uint8.*got dtype float32"):
        encoder.encode(images(2).astype(np.float32))
    with pytest.raises(ValueError, match=r"`images` must have shape \(n, 28, 28, 1\), got \(2, 32, 32, 1\)"):
        encoder.encode(np.zeros((2, 32, 32, 1), np.uint8))
    with pytest.raises(ValueError, match=r"`images` must have shape .* got \(28, 28, 1\)"):
        encoder.encode(images(1)[0])
    with pytest.raises(ValueError, match=r"`features` must have shape \(n, 256\), got \(3, 32\)"):
        encoder.encode_features(features(3, 32))
    with pytest.raises(ValueError, match="`features` must be a real"):
        encoder.encode_features(np.zeros((3, 256), bool))
    with pytest.raises(ValueError, match="`batch_size` must be an integer >= 1"):
        encoder.encode(images(2), batch_size=0)
    with pytest.raises(ValueError, match="`packed` must be a bool"):
        encoder.encode(images(2), packed=1)
    with pytest.raises(ValueError, match="`images` must be an array or an iterable"):
        encoder.encode(object())
    with pytest.raises(ValueError, match="is not a SavedModel directory"):
        load_encoder(tmp_path)
    tf.saved_model.save(tf.Module(), str(tmp_path / "other"))
    with pytest.raises(ValueError, match="not a tfhash encoder"):
        load_encoder(tmp_path / "other")


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    """A directory of PNG / JPEG files of other sizes and channels than the model's; the expected images."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(1)
    (root / "sub").mkdir()
    (root / ".hidden").mkdir()
    files = {"b.png": rng.integers(0, 256, (40, 30, 3), dtype=np.uint8),
             "sub/a.jpg": rng.integers(0, 256, (28, 28, 1), dtype=np.uint8),
             "c.PNG": rng.integers(0, 256, (28, 28, 1), dtype=np.uint8)}
    for name, pixels in files.items():
        data = tf.io.encode_jpeg(pixels) if name.endswith(".jpg") else tf.io.encode_png(pixels)
        tf.io.write_file(str(root / name), data)
    tf.io.write_file(str(root / ".hidden" / "x.png"), tf.io.encode_png(files["b.png"]))
    (root / "notes.txt").write_text("not an image")
    expected = {}
    for name in files:  # decoded to one channel and resized as the command line must do it
        image = tf.io.decode_image(tf.io.read_file(str(root / name)), channels=1, expand_animations=False)
        image = tf.image.resize(image, (28, 28), method="bilinear") if image.shape[:2] != (28, 28) else image
        image = tf.clip_by_value(tf.round(tf.cast(image, tf.float32)), 0, 255)
        expected[name] = tf.cast(image, tf.uint8).numpy()
    return root, expected


def test_cli_encodes_npy_image_and_directory(head_only, image_model, image_files, tmp_path, capsys):
    model, path = image_model
    root, decoded = image_files
    x = images(12)
    np.save(tmp_path / "images.npy", x)
    assert cli_main(["encode", "--model", str(path), "--input", str(tmp_path / "images.npy"),
                     "--output", str(tmp_path / "out" / "codes.npy"), "--batch-size", "5"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "codes.npy"), model.encode(x).numpy())

    np.save(tmp_path / "features.npy", features(6, 256))
    assert cli_main(["encode", "--model", str(path), "--input", str(tmp_path / "features.npy"), "--features",
                     "--packed", "--output", str(tmp_path / "features_codes.npy")]) == 0
    expected = pack_codes(model.codes(features(6, 256)) >= 0).numpy()
    np.testing.assert_array_equal(np.load(tmp_path / "features_codes.npy"), expected)

    np.save(tmp_path / "head_features.npy", features(6, 32))  # a head-only model implies --features
    assert cli_main(["encode", "--model", str(head_only[1]), "--input", str(tmp_path / "head_features.npy"),
                     "--output", str(tmp_path / "head_codes.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "head_codes.npy"), head_only[0].encode(features(6, 32)))

    assert cli_main(["encode", "--model", str(path), "--input", str(root / "b.png"),
                     "--output", str(tmp_path / "one.npy"), "--packed"]) == 0
    expected = pack_codes(model.encode(decoded["b.png"][None])).numpy()
    np.testing.assert_array_equal(np.load(tmp_path / "one.npy"), expected)

    assert cli_main(["encode", "--model", str(path), "--input", str(root),
                     "--output", str(tmp_path / "dir.npy"), "--batch-size", "2"]) == 0
    names = (tmp_path / "dir.txt").read_text().splitlines()
    # Sorted relative paths; hidden and non-image files skipped.
    assert names == ["b.png", "c.PNG", "sub/a.jpg"]
    expected = model.encode(np.stack([decoded[name] for name in names])).numpy()
    np.testing.assert_array_equal(np.load(tmp_path / "dir.npy"), expected)
    assert "dir.txt" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary files


def test_cli_errors_exit_2(head_only, image_model, image_files, tmp_path, capsys):
    root, _ = image_files
    np.save(tmp_path / "features.npy", features(4, 256))
    out = str(tmp_path / "codes.npy")
    cases = [
        (["--model", str(image_model[1]), "--input", str(tmp_path / "missing.npy"), "--output", out],
         "does not exist"),
        (["--model", str(image_model[1]), "--input", str(tmp_path / "features.npy"), "--output", out],
         "pass --features"),
        (["--model", str(head_only[1]), "--input", str(root), "--output", out], "head-only"),
        (["--model", str(image_model[1]), "--input", str(root / "notes.txt"), "--output", out],
         "neither a .npy file"),
        (["--model", str(image_model[1]), "--input", str(root), "--output", str(tmp_path / "codes.csv")],
         "must name a .npy file"),
        (["--model", str(tmp_path), "--input", str(root), "--output", out], "not a SavedModel directory"),
        (["--model", str(image_model[1]), "--input", str(root), "--output", out, "--batch-size", "0"],
         "--batch-size must be >= 1"),
    ]
    for arguments, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            cli_main(["encode", *arguments])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "codes.npy").exists()
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["--help"])
    assert exit_info.value.code == 0 and "encode" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_subprocess(image_model, image_files, tmp_path):
    """``python -m tfhash encode`` as a user runs it: same codes as the model."""
    model, path = image_model
    root, decoded = image_files
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "tfhash", "encode", "--model", str(path), "--input", str(root),
               "--output", str(tmp_path / "codes.npy"), "--packed"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    names = (tmp_path / "codes.txt").read_text().splitlines()
    expected = pack_codes(model.encode(np.stack([decoded[name] for name in names]))).numpy()
    np.testing.assert_array_equal(np.load(tmp_path / "codes.npy"), expected)


# --- damaged SavedModels: one clear error naming the path (issue 12 item 8) ----------------------------------


def _truncate_data(path):
    data = path / "variables" / "variables.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])


def _empty_index(path):
    (path / "variables" / "variables.index").write_bytes(b"")


def _flip_bytes(path):
    data = path / "variables" / "variables.data-00000-of-00001"
    content = bytearray(data.read_bytes())
    content[len(content) // 2] ^= 0xFF
    data.write_bytes(bytes(content))


def _remove_variables(path):
    import shutil

    shutil.rmtree(path / "variables")


def _empty_graph(path):
    (path / "saved_model.pb").write_bytes(b"")


def _bad_metadata(path):
    (path / "assets" / "tfhash_encoder.json").write_text('{"format": "tfhash-encoder", num_bits: 16')


def _incomplete_metadata(path):
    metadata_path = path / "assets" / "tfhash_encoder.json"
    metadata = json.loads(metadata_path.read_text())
    del metadata["num_bits"]
    metadata_path.write_text(json.dumps(metadata))


DAMAGES = {
    "truncated variables data": (_truncate_data, r"cannot be loaded: .*damaged.*IndexError", ""),
    "empty variables index": (_empty_index, r"cannot be loaded: .*damaged.*sstable", ""),
    "flipped bytes": (_flip_bytes, r"cannot be loaded: .*damaged.*DataLossError", ""),
    "missing variables folder": (_remove_variables, r"is damaged or incomplete: .* is missing", "variables"),
    "empty saved_model.pb": (_empty_graph, r"is damaged or incomplete: .* is empty", "saved_model.pb"),
    "bad metadata JSON": (_bad_metadata, r"is damaged or incomplete: it is not valid JSON",
                          f"assets/{METADATA_NAME}"),
    "incomplete metadata": (_incomplete_metadata, r"missing or invalid 'num_bits'", f"assets/{METADATA_NAME}"),
}


@pytest.fixture
def damaged(head_only, tmp_path, request):
    import shutil

    damage, match, part = DAMAGES[request.param]
    path = tmp_path / "damaged"
    shutil.copytree(head_only[1], path)
    damage(path)
    named = str(path / part) if part else str(path)
    return path, match, named


@pytest.mark.parametrize("damaged", list(DAMAGES), indirect=True)
def test_damaged_saved_models_fail_clearly(damaged, tmp_path, capsys):
    path, match, named = damaged
    with pytest.raises(ValueError, match=match) as error_info:
        load_encoder(path)
    assert named in str(error_info.value)
    np.save(tmp_path / "features.npy", features(3, 32))
    with pytest.raises(SystemExit) as exit_info:  # the command line: one message, no traceback
        cli_main(["encode", "--model", str(path), "--input", str(tmp_path / "features.npy"),
                  "--output", str(tmp_path / "codes.npy")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err and re.search(match, err)
    assert not (tmp_path / "codes.npy").exists()


# --- the serving interface ------------------------------------------------------------------------------


def test_export_reads_only_a_declared_serving_interface(tmp_path):
    """Any object declaring a ServingInterface is served; export.py knows no model class."""
    source = Path(export_encoder.__code__.co_filename).read_text()
    imported = [alias.name for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Import)
                for alias in node.names]
    imported += [node.module for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom)]
    assert not [name for name in imported if name.startswith("tfhash.models")], imported
    assert re.findall(r"(?:has|get)attr\(model, \"(\w+)\"", source) == ["serving_interface"]
    assert not re.findall(r"\bmodel\.(?:head|backbone|pixel_range|codes|encode|feature_size)\b", source)
    dense = keras.layers.Dense(12, kernel_initializer=keras.initializers.GlorotUniform(seed=3))
    dense.build((None, 5))
    sign = lambda x: tf.where(dense(x) >= 0, 1.0, -1.0)  # noqa: E731
    interface = ServingInterface(num_bits=12, model_class="Custom", model_name="custom", feature_size=5,
                                 encode_features=sign, preprocessing=None, variables=dense.variables)

    class Declares:
        def serving_interface(self):
            return interface

    for i, model in enumerate((interface, Declares())):
        encoder = load_encoder(export_encoder(model, tmp_path / f"m{i}", verbose=False))
        x = features(9, 5)
        np.testing.assert_array_equal(encoder.encode_features(x), sign(x).numpy())
        assert encoder.metadata["model_class"] == "Custom" and encoder.metadata["model_name"] == "custom"
        assert set(encoder.saved_model.signatures) == {"serving_default", "encode_features"}

    class Wrong:
        def serving_interface(self):
            return {"num_bits": 12}

    with pytest.raises(ValueError, match="must return a tfhash.serving.ServingInterface, got dict"):
        export_encoder(Wrong(), tmp_path / "wrong")


def test_serving_interface_checks_its_fields():
    encode = lambda x: x  # noqa: E731
    with pytest.raises(ValueError, match="`num_bits` must be an int >= 1"):
        ServingInterface(0, "M", "m", feature_size=3, encode_features=encode)
    with pytest.raises(ValueError, match="`image_shape` and `encode_images` go together"):
        ServingInterface(4, "M", "m", image_shape=(8, 8, 1))
    with pytest.raises(ValueError, match="`image_shape` must be \\(H, W, C\\)"):
        ServingInterface(4, "M", "m", image_shape=(8, 8), encode_images=encode)
    with pytest.raises(ValueError, match="declares neither"):
        ServingInterface(4, "M", "m")
    with pytest.raises(ValueError, match="`encode_features` must be callable"):
        ServingInterface(4, "M", "m", feature_size=3, encode_features="head")
    interface = ServingInterface(4, "M", "m", image_shape=[8, 8, 1], encode_images=encode)
    assert interface.image_shape == (8, 8, 1) and interface.feature_size is None
