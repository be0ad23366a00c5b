"""DSAH (Lin et al., CIKM 2021): tanh codes under an adaptively grown neighbour similarity, pairs weighted by PIC.

The neighbour similarity W⁰ (k-NN and shared-neighbour graphs of the pretrained features) grows by Adaptive
Neighbor Discovery every 10 epochs; the loss is the Pairwise-Information-Content-weighted squared error between
the codes' cosines and W, plus a quantisation term. The paper fine-tunes VGG19; the demo trains on frozen
features. Configuration: recipes/dsah.toml.

    python -m tfhash.recipes.dsah --preset demo    # offline: digits, frozen EfficientNet-Lite0
    python -m tfhash.recipes.dsah                  # the paper: CIFAR-10, VGG19 fine-tuned, 16-128 bits
"""

from tfhash.recipes import runner


def main(argv=None):
    """Runs the recipe with the flags ``argv`` (None: ``sys.argv``); returns the metrics.json record."""
    return runner.run("dsah", argv, description=__doc__)


if __name__ == "__main__":
    main()
