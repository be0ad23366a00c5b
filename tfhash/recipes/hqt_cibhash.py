"""HQT + CIBHash (Kim & Ryu, BMVC 2024): CIBHash regularised by Hyper-Quantization-Tree pseudo bits.

CIBHash's contrastive information-bottleneck loss on two views, plus the HQT BCE on both views' codes,
with CIBHash's hyper-parameters on HQT's protocol. Configuration: recipes/hqt_cibhash.toml.

    python -m tfhash.recipes.hqt_cibhash --preset demo    # offline: digits, EfficientNet-Lite0, 16/32 bits
    python -m tfhash.recipes.hqt_cibhash                  # the paper: CIFAR-10(I), frozen VGG16
"""

from tfhash.recipes import runner


def main(argv=None):
    """Runs the recipe with the flags ``argv`` (None: ``sys.argv``); returns the metrics.json record."""
    return runner.run("hqt_cibhash", argv, description=__doc__)


if __name__ == "__main__":
    main()
