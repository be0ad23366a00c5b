"""HashGAN (Ghasedi Dizaji et al., CVPR 2018) on MNIST: generative adversarial hashing trained from scratch.

A generator, and a discriminator and an encoder sharing all their layers but the last, trained alternately
(tfhash.models.HashGAN); retrieval figures averaged over runs, k-means clustering quality of the codes, a grid
of generated images. Configuration: recipes/hashgan_mnist.toml.

    python -m tfhash.recipes.hashgan_mnist                    # the paper: 16/32/64 bits, 5 runs
    python -m tfhash.recipes.hashgan_mnist --preset demo      # one short run
"""

from tfhash.recipes import runner


def main(argv=None):
    """Runs the recipe with the flags ``argv`` (None: ``sys.argv``); returns the metrics.json record."""
    return runner.run("hashgan_mnist", argv, description=__doc__)


if __name__ == "__main__":
    main()
