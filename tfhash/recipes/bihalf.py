"""Bi-half (Li & van Gemert, AAAI 2021): a frozen backbone, a bias-free linear head and the Bi-half layer.

The Bi-half layer makes every bit exactly half +1, half -1 over the batch (optimal transport to the half-half
distribution), with a straight-through gradient and a pull term; the loss preserves the cosine similarities of
the backbone features. Configuration: recipes/bihalf.toml (the paper's protocol and hyper-parameters).

    python -m tfhash.recipes.bihalf --preset demo    # offline: digits, EfficientNet-Lite0, 16/32 bits
    python -m tfhash.recipes.bihalf                  # the paper: CIFAR-10, frozen VGG16, 16/32/64 bits
    python -m tfhash.recipes.bihalf --backbone efficientnet_lite0 --data-dir ../shared/data --bits 64
"""

from tfhash.recipes import runner


def main(argv=None):
    """Runs the recipe with the flags ``argv`` (None: ``sys.argv``); returns the metrics.json record."""
    return runner.run("bihalf", argv, description=__doc__)


if __name__ == "__main__":
    main()
