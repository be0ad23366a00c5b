"""GreedyHash (Su et al., NeurIPS 2018): frozen backbone, linear head, sign with a straight-through gradient.

The loss preserves the cosine similarities of the backbone features in the codes and pulls the activations
towards ±1 with a cubic penalty. Configuration: recipes/greedyhash.toml (300 epochs at 16 bits in the paper).

    python -m tfhash.recipes.greedyhash --preset demo    # offline: digits, EfficientNet-Lite0, 16/32 bits
    python -m tfhash.recipes.greedyhash                  # the paper: CIFAR-10, frozen VGG16, 16/32/64 bits
"""

from tfhash.recipes import runner


def main(argv=None):
    """Runs the recipe with the flags ``argv`` (None: ``sys.argv``); returns the metrics.json record."""
    return runner.run("greedyhash", argv, description=__doc__)


if __name__ == "__main__":
    main()
