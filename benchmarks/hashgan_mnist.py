"""HashGAN on MNIST against the paper's Tables 1–3: the recipe's figures beside the paper's, with the gaps.

Runs ``tfhash.recipes.hashgan_mnist`` (the paper preset: protocol ``mnist-hashgan``, 1,000 queries, trained on
the 69,000-image gallery; the paper's model, losses and optimiser) with the given budget, and prints for each
code length the mean ± std over runs of mAP (ties "average" and "stable"), mAP@1000, precision@1000 and the
k-means clustering NMI / accuracy, each beside the paper's figure and the gap in points. The paper states no
epoch count; ``--epochs`` is the budget (the recipe's default is Improved-GAN's 300).

    python benchmarks/hashgan_mnist.py --epochs 8 --runs 2 --output benchmarks/results/hashgan_mnist
    python benchmarks/hashgan_mnist.py --epochs 8 --runs 2 --output ... --resume   # finish an interrupted run

Everything after the known flags goes to the recipe (e.g. ``--bits 16``, ``--min-entropy-weight 0.01``).
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfhash.recipes import runner  # noqa: E402

SHARED_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--output", default="benchmarks/results/hashgan_mnist")
    parser.add_argument("--data-dir", default=SHARED_DATA)
    args, rest = parser.parse_known_args(argv)
    record = runner.run(
        "hashgan_mnist",
        [
            "--epochs",
            str(args.epochs),
            "--runs",
            str(args.runs),
            "--output",
            args.output,
            "--data-dir",
            args.data_dir,
            "--verbose",
            "2",
            *rest,
        ],
    )
    print("\nGap to the paper (ours − paper, points; NMI / accuracy × 100):")
    for row in record["results"]:
        gaps = []
        for name in ("map", "map@1000", "precision@1000", "nmi", "accuracy"):
            paper = row["reported"].get(name, row["reported_clustering"].get(name))
            if paper is None or row[name] is None:
                continue
            scale = 100 if name in ("nmi", "accuracy") else 1
            gaps.append(f"{name} {100 * row[name]['mean'] - scale * paper:+.2f}")
        print(f"  {row['bits']} bits ({row['runs']} runs, {row['epochs']} epochs): " + ", ".join(gaps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
