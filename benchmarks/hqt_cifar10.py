"""HQT on CIFAR-10: does the Hyper-Quantization Tree improve each base hasher? (HQT paper, Table 2)

Protocol ``cifar10-i`` (1,000 queries per class from all 60,000 images, the other 50,000 are the database, 500
training images per class drawn from it; mAP@all), frozen EfficientNet-Lite0 ImageNet features (1,280-d)
through the feature bank, 16 / 32 / 64 bits, for Bi-half, CIBHash and CIMON, each without and with the HQT
regulariser (alpha = 0.5, depths 3-5, the released code's shared tree). Every model trains on cached features
of augmented views; the heads, losses and hyper-parameters are those of tfhash.models' defaults (the papers').

Data: ../shared/data/cifar10-jpg.tar.gz, loaded by tfhash.data.sources.load_cifar10 (extracted once into its
cache). The feature banks (query and database features, and the training views of each method) are cached
under ``--bank-dir``; the first run extracts them (about 110,000 backbone calls: ~25 min on 2 CPU cores).

    python benchmarks/hqt_cifar10.py --extract-only   # fill the feature-bank cache
    python benchmarks/hqt_cifar10.py                  # train and evaluate everything, write the JSON
"""

import argparse
import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfhash import backbones  # noqa: E402
from tfhash.data import get_protocol  # noqa: E402
from tfhash.data.augment import cibhash_view, cimon_strong_view, cimon_weak_view  # noqa: E402
from tfhash.data.feature_bank import FeatureBank  # noqa: E402
from tfhash.data.sources import load_cifar10  # noqa: E402

CIFAR_JPG = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpg.tar.gz"
PROTOCOL = "cifar10-i"


def training_augmentations(image_size):
    """Each base's training views: (augmentation or pair, number of stored views)."""
    return {
        "bihalf": (cimon_weak_view(image_size), 2),
        "cibhash": ((cibhash_view(image_size), cibhash_view(image_size)), 4),
        "cimon": ((cimon_weak_view(image_size), cimon_strong_view(image_size)), 2),
    }


def feature_banks(backbone_name, seed, bank_dir, verbose=1):
    """(split, {base: FeatureBank}) on protocol cifar10-i; extracts what the cache lacks."""
    if not CIFAR_JPG.exists():
        raise SystemExit(f"CIFAR-10 is not at {CIFAR_JPG}: place cifar10-jpg.tar.gz there.")
    pool = load_cifar10(CIFAR_JPG.parent)
    split = get_protocol(PROTOCOL).split(pool, seed=seed)
    backbone = backbones.get(backbone_name)
    banks = {}
    for base, (augment, views) in training_augmentations(backbone.image_size).items():
        banks[base] = FeatureBank(
            backbone, pool, protocol=split.protocol, train=split.train,
            evaluation={"query": split.query, "database": split.database},
            augment=augment, views=views, seed=seed, backbone_name=backbone_name,
            directory=bank_dir, batch_size=128, verbose=verbose,
        )
    return split, banks


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bank-dir", default=None, help="feature-bank cache (default: the FeatureBank default)")
    parser.add_argument("--extract-only", action="store_true", help="fill the feature-bank cache and stop")
    args = parser.parse_args(argv)
    split, banks = feature_banks(args.backbone, args.seed, args.bank_dir)
    if args.extract_only:
        for base, bank in banks.items():
            print(base, {name: path for name, path in bank.files.items()})
        return


if __name__ == "__main__":
    main()
