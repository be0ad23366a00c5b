"""HQT pseudo-label speed: HyperQuantizationTree.pseudo_bits on 50,000 × 4,096 float32 features, 64 bits.

Features: a random Gaussian mixture (seed 0): ``--clusters`` centres ~ N(0, s²) in 4,096-d (s =
``--centre-scale``), each sample a centre plus N(0, 1) noise — the size of CIFAR-10's 50k training set under
VGG16 fc7. With s = 1 the clusters are well separated and Lloyd converges in a few steps; a small s (e.g.
0.05: overlapping clusters) makes most nodes run all ``kmeans_iterations`` (20), the slow case. Timed (wall
clock, one run each):

1. shared_tree=True at full dimension (the released behaviour: one depth-5 tree grown once);
2. shared_tree=False with ``--projection-dim`` (randomized PCA first, then 64 independent trees);
3. shared_tree=False at full dimension on ``--full-dim-bits`` bits only, extrapolated linearly to 64 bits
   (skip with --full-dim-bits 0).

    python benchmarks/hqt_tree_speed.py                 # ~ a few minutes on 2 CPU cores
    python benchmarks/hqt_tree_speed.py --centre-scale 0.05   # overlapping clusters: the slow case
    python benchmarks/hqt_tree_speed.py --n 5000        # quick look
"""

import argparse
import json
import os
import platform
import time

import numpy as np

from tfhash.supervision import HyperQuantizationTree

BUDGET_S = 180.0


def gaussian_mixture(n, dim, clusters, centre_scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32) * np.float32(centre_scale)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x += centres[rng.integers(clusters, size=n)]
    return x


def timed(features, **kwargs):
    hqt = HyperQuantizationTree(**kwargs)
    start = time.perf_counter()
    bits = hqt.pseudo_bits(features)
    seconds = time.perf_counter() - start
    return seconds, bits, hqt


def main():
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=4096)
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--clusters", type=int, default=10)
    parser.add_argument("--centre-scale", type=float, default=1.0)
    parser.add_argument("--projection-dim", type=int, default=128)
    parser.add_argument("--full-dim-bits", type=int, default=4)
    args = parser.parse_args()

    features = gaussian_mixture(args.n, args.dim, args.clusters, args.centre_scale)
    print(f"features {features.shape} float32 ({args.clusters} clusters, centre scale {args.centre_scale}), "
          f"{args.bits} bits, depth 3-5, seed 0; "
          f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")
    results = {}

    seconds, bits, hqt = timed(features, num_bits=args.bits, shared_tree=True, seed=0)
    results["shared_full_dim_s"] = round(seconds, 2)
    print(f"shared_tree=True, full dim ({args.dim}): {seconds:.1f} s "
          f"({'meets' if seconds < BUDGET_S else 'misses'} the {BUDGET_S:.0f} s budget); "
          f"mean bit balance {bits.mean():.3f}; depths {np.bincount(hqt.depths)[3:].tolist()} (3/4/5)")

    seconds, bits, _ = timed(features, num_bits=args.bits, shared_tree=False, seed=0,
                             projection_dim=args.projection_dim)
    results[f"independent_pca{args.projection_dim}_s"] = round(seconds, 2)
    print(f"shared_tree=False, PCA to {args.projection_dim}: {seconds:.1f} s "
          f"({'meets' if seconds < BUDGET_S else 'misses'} the {BUDGET_S:.0f} s budget); "
          f"mean bit balance {bits.mean():.3f}")

    if args.full_dim_bits > 0:
        seconds, _, hqt = timed(features, num_bits=args.full_dim_bits, shared_tree=False, seed=0)
        estimate = seconds * args.bits / args.full_dim_bits
        results["independent_full_dim_measured_s"] = round(seconds, 2)
        results["independent_full_dim_bits_measured"] = args.full_dim_bits
        results["independent_full_dim_extrapolated_s"] = round(estimate, 1)
        print(f"shared_tree=False, full dim: {seconds:.1f} s for {args.full_dim_bits} bits "
              f"(depths {hqt.depths.tolist()}) -> ~{estimate:.0f} s for {args.bits} bits "
              f"({'meets' if estimate < BUDGET_S else 'misses'} the {BUDGET_S:.0f} s budget)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
