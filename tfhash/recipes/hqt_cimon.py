"""HQT + CIMON (Kim & Ryu, BMVC 2024): CIMON regularised by Hyper-Quantization-Tree pseudo bits.

CIMON's pseudo-similarity and contrastive losses on a weak and a strong view, plus the HQT BCE on both
views' tanh outputs, with CIMON's hyper-parameters on HQT's protocol. Configuration: recipes/hqt_cimon.toml.

    python -m tfhash.recipes.hqt_cimon --preset demo    # offline: digits, frozen EfficientNet-Lite0
    python -m tfhash.recipes.hqt_cimon                  # the paper: CIFAR-10(I), VGG16 fine-tuned
"""

from tfhash.recipes import runner


def main(argv=None):
    """Runs the recipe with the flags ``argv`` (None: ``sys.argv``); returns the metrics.json record."""
    return runner.run("hqt_cimon", argv, description=__doc__)


if __name__ == "__main__":
    main()
