"""HQT + Bi-half (Kim & Ryu, BMVC 2024): Bi-half regularised by Hyper-Quantization-Tree pseudo bits.

Per bit, a random-depth (3-5) tree of binary k-means splits of the training features, its leaves merged at
random into two hyper-clusters, gives a pseudo bit per training image; L = (1 - α) L_Bi-half + α BCE(codes,
pseudo bits), α = 0.5. Configuration: recipes/hqt_bihalf.toml (the released code's CIFAR10-I command).

    python -m tfhash.recipes.hqt_bihalf --preset demo    # offline: digits, EfficientNet-Lite0, 16/32 bits
    python -m tfhash.recipes.hqt_bihalf                  # the paper: CIFAR-10(I), frozen VGG16, 16/32/64 bits
"""

from tfhash.recipes import runner


def main(argv=None):
    """Runs the recipe with the flags ``argv`` (None: ``sys.argv``); returns the metrics.json record."""
    return runner.run("hqt_bihalf", argv, description=__doc__)


if __name__ == "__main__":
    main()
