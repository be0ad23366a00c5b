"""CIMON (Luo et al., IJCAI 2021): tanh codes of a weak and a strong view under a confident pseudo-similarity.

The pseudo-similarity (thresholded cosine, with a statistical and a clustering confidence) is fitted once on
the training features; the loss is its weighted squared error against the codes' inner products plus NT-Xent
between the views. The paper fine-tunes VGG16 end to end; the demo trains on frozen features. Configuration:
recipes/cimon.toml.

    python -m tfhash.recipes.cimon --preset demo    # offline: digits, frozen EfficientNet-Lite0
    python -m tfhash.recipes.cimon                  # the paper: CIFAR-10, VGG16 fine-tuned, 16/32/64 bits
"""

from tfhash.recipes import runner


def main(argv=None):
    """Runs the recipe with the flags ``argv`` (None: ``sys.argv``); returns the metrics.json record."""
    return runner.run("cimon", argv, description=__doc__)


if __name__ == "__main__":
    main()
