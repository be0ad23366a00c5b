"""UCSH: hash codes from a binary-latent VAE, clustered onto Hadamard codewords and separated at a threshold.

The codes reconstruct the deep features (binary latent VAE), preserve their cosine similarities, move towards the
Hadamard codeword of their feature cluster and push their pairwise similarities away from the half-Gaussian
threshold. The paper fine-tunes VGG16; the demo trains on frozen features. Configuration: recipes/ucsh.toml.

    python -m tfhash.recipes.ucsh --preset demo    # offline: digits, frozen EfficientNet-Lite0
    python -m tfhash.recipes.ucsh                  # the paper: CIFAR-10, VGG16 fine-tuned, 16/32/64 bits
"""

from tfhash.recipes import runner


def main(argv=None):
    """Runs the recipe with the flags ``argv`` (None: ``sys.argv``); returns the metrics.json record."""
    return runner.run("ucsh", argv, description=__doc__)


if __name__ == "__main__":
    main()
