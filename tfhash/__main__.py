"""Command line of tfhash: ``python -m tfhash <command>``; ``<command> --help`` lists its options.

Commands:
    encode: binary codes of images or features with an exported model (``model.export(path)``), as .npy.

Example::

    python -m tfhash encode --model saved_models/demo --input photos/ --output codes.npy --packed
"""

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from tfhash._atomic import write_atomically, write_text

ENCODE_DESCRIPTION = """\
Encode images or features with a SavedModel written by model.export(path) (tfhash.export), and save the codes
as a .npy file: float32 +-1 codes of shape (N, bits), or with --packed uint8 bytes (N, ceil(bits / 8)), 8 bits
per byte in the bit order the model was exported with (numpy.packbits' "big" by default).

INPUT is one of:
  - a .npy file: uint8 images (N, H, W, C) at the model's input size, or with --features float features
    (N, feature_size) (a head-only model takes features only, --features is then implied);
  - an image file (.jpg, .jpeg, .png, .bmp): one row of codes;
  - a directory: its image files, searched recursively (hidden files and folders skipped), in sorted order of
    their paths relative to INPUT. The file list is written beside the output with the suffix .txt
    (codes.npy -> codes.txt), one relative path per line: line i names row i of the codes.
Image files are decoded to the model's channels and resized (bilinear, as tfhash's pipelines do) to its input
size. The output (and the list) is written atomically: a failed run leaves no partial file.
Errors exit with status 2."""


def build_parser():
    """The argument parser of ``python -m tfhash``, one subparser per command."""
    parser = argparse.ArgumentParser(
        prog="python -m tfhash",
        description="tfhash: deep unsupervised image hashing. Commands: encode.",
    )
    commands = parser.add_subparsers(dest="command", metavar="command")
    encode = commands.add_parser(
        "encode",
        help="codes of images or features with an exported model (SavedModel) -> .npy",
        description=ENCODE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = encode.add_argument
    add("--model", required=True, metavar="PATH", help="SavedModel directory (model.export)")
    add("--input", required=True, metavar="INPUT", help=".npy file, image file or directory")
    add("--output", required=True, metavar="OUTPUT", help="codes file to write, ending in .npy")
    add("--packed", action="store_true", help="write packed uint8 codes instead of +-1 float32")
    add("--batch-size", type=int, default=256, metavar="N", help="rows per batch (default 256)")
    add("--features", action="store_true", help="INPUT (.npy) holds backbone features: encode with the head")
    encode.set_defaults(run=run_encode, parser=encode)
    return parser


def main(argv=None):
    """Runs ``python -m tfhash``; returns the exit status (errors exit through argparse with status 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.run(args)
    except (ValueError, OSError) as error:
        args.parser.error(str(error))  # prints the usage and the message, exits with status 2


def run_encode(args):
    """The ``encode`` command."""
    from tfhash.export import load_encoder

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}.")
    output = Path(args.output)
    if output.suffix != ".npy":
        raise ValueError(f"--output must name a .npy file, got {args.output!r}.")
    source = Path(args.input)
    if not source.exists():
        raise ValueError(f"--input {args.input!r} does not exist.")
    if not Path(args.model).is_dir():
        raise ValueError(f"--model {args.model!r} is not a directory (a SavedModel written by model.export).")
    encoder = load_encoder(args.model)

    names = None
    if source.is_dir() or source.suffix.lower() != ".npy":
        if args.features:
            raise ValueError("--features needs a .npy file of features as --input, not image files.")
        _check_takes_images(encoder, args.input)
        from tfhash.data.sources.image_folder import IMAGE_EXTENSIONS

        if source.is_dir():
            files = _image_files(source, IMAGE_EXTENSIONS)
            names = [file.relative_to(source).as_posix() for file in files]
        elif source.suffix.lower() in IMAGE_EXTENSIONS:
            files = [source]
        else:
            raise ValueError(
                f"--input {args.input!r} is neither a .npy file, an image file "
                f"({', '.join(IMAGE_EXTENSIONS)}) nor a directory."
            )
        batches = (_read_images(files[i:i + args.batch_size], encoder.image_shape)
                   for i in range(0, len(files), args.batch_size))
        codes = encoder.encode(batches, packed=args.packed)
    else:
        try:
            array = np.load(source, mmap_mode="r", allow_pickle=False)  # mapped: batches are read one by one
        except ValueError as error:
            raise ValueError(f"--input {args.input!r} is not a readable .npy array: {error}") from None
        if args.features or encoder.image_shape is None or array.ndim == 2:
            if encoder.image_shape is not None and not args.features:
                raise ValueError(
                    f"--input {args.input!r} holds a 2-D array {array.shape}: pass --features to encode "
                    f"backbone features (N, {encoder.feature_size}), or give images (N, "
                    f"{', '.join(map(str, encoder.image_shape))})."
                )
            codes = _with_argument("--input", encoder.encode_features, array, args)
        else:
            codes = _with_argument("--input", encoder.encode, array, args)

    _save_atomically(output, codes, names)
    kind = "packed uint8" if args.packed else "+-1 float32"
    listed = f" and the file list to {output.with_suffix('.txt')}" if names is not None else ""
    print(f"Wrote {kind} codes {codes.shape} ({encoder.num_bits} bits) to {output}{listed}.")
    return 0


def _with_argument(flag, encode, array, args):
    """Runs `encode`, naming the command-line flag instead of the Python argument in errors."""
    try:
        return encode(array, batch_size=args.batch_size, packed=args.packed)
    except ValueError as error:
        message = str(error)
        for argument in ("images", "features"):
            message = message.replace(f"`{argument}`", f"{flag} ({argument})")
        raise ValueError(message) from None


def _check_takes_images(encoder, name):
    if encoder.image_shape is None:
        raise ValueError(
            f"the model is head-only (no backbone): it encodes features (N, {encoder.feature_size}) from a "
            f".npy file, not the images of --input {name!r}."
        )


def _image_files(directory, extensions):
    files = []
    for root, folders, names in os.walk(directory):
        folders[:] = [folder for folder in folders if not folder.startswith(".")]
        files += [Path(root) / name for name in names
                  if not name.startswith(".") and Path(name).suffix.lower() in extensions]
    if not files:
        raise ValueError(
            f"--input directory {str(directory)!r} holds no image files ({', '.join(extensions)})."
        )
    return sorted(files, key=lambda file: file.relative_to(directory).as_posix())


def _read_images(files, image_shape):
    """uint8 images ``(len(files), *image_shape)``, decoded and resized as `tfhash.data` pipelines do."""
    import tensorflow as tf

    height, width, channels = image_shape
    images = []
    for file in files:
        try:
            image = tf.io.decode_image(tf.io.read_file(str(file)), channels=channels, expand_animations=False)
        except tf.errors.OpError as error:
            raise ValueError(f"cannot read the image {str(file)!r}: {error.message}") from None
        if tuple(image.shape[:2]) != (height, width):
            image = tf.image.resize(image, (height, width), method="bilinear")
            image = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
        images.append(image.numpy())
    return np.stack(images)


def _save_atomically(output, codes, names):
    """Writes the file list (if any), then the codes, each whole or not at all (`tfhash._atomic`)."""
    if names is not None:
        write_text(output.with_suffix(".txt"), "".join(f"{name}\n" for name in names))
    # A file object: np.save would append .npy to a temporary file's name.
    write_atomically(output, lambda file: np.save(file, codes, allow_pickle=False), mode="wb")


if __name__ == "__main__":
    sys.exit(main())
