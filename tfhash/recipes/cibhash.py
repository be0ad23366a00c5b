"""CIBHash (Qiu et al., IJCAI 2021): contrastive learning on the stochastic binary codes of two views.

NT-Xent between the two views' codes plus a symmetric KL between their Bernoulli probabilities (the
information bottleneck), on a frozen backbone's features. Configuration: recipes/cibhash.toml.

    python -m tfhash.recipes.cibhash --preset demo    # offline: digits, EfficientNet-Lite0, 16/32 bits
    python -m tfhash.recipes.cibhash                  # the paper: CIFAR-10, frozen VGG16, 16/32/64 bits
"""

from tfhash.recipes import runner


def main(argv=None):
    """Runs the recipe with the flags ``argv`` (None: ``sys.argv``); returns the metrics.json record."""
    return runner.run("cibhash", argv, description=__doc__)


if __name__ == "__main__":
    main()
