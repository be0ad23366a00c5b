"""Searches a recipe's hyperparameters with Keras-Tuner: ``python -m tfhash.tune <recipe> --config search.toml``.

Write the values to search in a copy of the recipe's configuration, in place of literals:

    [hqt]
    alpha = { choice = [0.1, 0.3, 0.5] }
    depth_range = { choice = [[2, 3], [3, 5], [4, 6]] }
    [demo]
    optimizer = { class_name = "Adam", learning_rate = { log_range = [1e-4, 1e-2] } }

then, e.g.

    python -m tfhash.tune hqt_bihalf --config search.toml --preset demo --bits 16 \\
        --tuner random --trials 20 --directory searches

Each trial trains the recipe's model on the training images outside a seeded validation carve-out and scores
it by ``val_map@k``, its carve-out queries ranked against the rest; the protocol's queries are never read. A
line per trial shows its values, objective and wall time. ``searches/<project>/`` receives ``trials.csv``,
``objective.png`` and ``best.toml``, the best configuration as a recipe file: ``python -m
tfhash.recipes.<recipe> --config searches/<project>/best.toml --preset demo`` then evaluates it on the queries,
once. Run the same command again to resume an interrupted search (``--overwrite`` starts over).

The recipe's own flags (``--data-dir``, ``--bank-dir``, ``--epochs``, ``--backbone``, ``--limit``,
``--jit-compile``, ...) are passed through to every trial.

Distributed search uses Keras-Tuner's chief / worker mode: run the same command once per process with
``KERASTUNER_TUNER_ID`` (``chief``, then ``tuner0``, ``tuner1``, ...), ``KERASTUNER_ORACLE_IP`` and
``KERASTUNER_ORACLE_PORT`` set; the chief serves the trials and writes the outputs once every worker is done.
"""

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from keras_tuner.src.distribute import utils as distribute_utils  # noqa: E402

from tfhash.recipes import runner  # noqa: E402
from tfhash.tuning import RecipeHyperModel, build_tuner, write_outputs  # noqa: E402
from tfhash.tuning.search import TUNERS  # noqa: E402


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m tfhash.tune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("recipe", help="the recipe searched (tfhash.recipes.<recipe>)")
    add("--config", metavar="PATH", help="its configuration with search entries (default: the recipe's own)")
    add("--preset", choices=runner.PRESETS, default="paper", help="the preset searched (default paper)")
    add("--bits", type=int, metavar="K", help="the code length searched (default: the preset's first)")
    add("--tuner", choices=sorted(TUNERS), default="random", help="Keras-Tuner's tuner (default random)")
    add("--trials", type=int, metavar="N", help="trials of the random and bayesian tuners")
    add("--max-epochs", type=int, metavar="E", help="hyperband: the most epochs of a trial (default: the preset's)")
    add("--factor", type=int, default=3, help="hyperband: the reduction factor (default 3)")
    add("--hyperband-iterations", type=int, default=1, metavar="N", help="hyperband: brackets sweeps (default 1)")
    add("--directory", required=True, metavar="DIR", help="where searches keep their state and outputs")
    add("--project", metavar="NAME", help="the search's folder under --directory (default <recipe>_<preset>_<K>bits)")
    add("--seed", type=int, default=0, help="seed of the split, the carve-out and every trial (default 0)")
    add("--tuner-seed", type=int, default=0, help="seed of the values the tuner tries (default 0)")
    add("--validation-size", type=float, default=0.1, metavar="F",
        help="training images held out as validation queries: a fraction, or a count >= 1 (default 0.1)")
    add("--overwrite", action="store_true", help="start over instead of resuming the search in its folder")
    add("--verbose", type=int, choices=(0, 1, 2), default=0, help="Keras progress within each trial (default 0)")
    return parser


def main(argv=None):
    parser = build_parser()
    args, recipe_flags = parser.parse_known_args(argv)
    if args.tuner != "hyperband" and (args.trials is None or args.trials < 1):
        parser.error(f"--trials: the {args.tuner} tuner needs a positive number of trials")
    for flag in ("bits", "max_epochs"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be a positive integer, got {getattr(args, flag)}")
    if args.tuner_seed < 0:
        parser.error(f"--tuner-seed must be an integer >= 0, got {args.tuner_seed}")
    size = int(args.validation_size) if args.validation_size >= 1 else args.validation_size
    started = time.perf_counter()
    hypermodel = RecipeHyperModel(args.recipe, args.config, preset=args.preset, bits=args.bits, seed=args.seed,
                                  validation_size=size, recipe_flags=recipe_flags, verbose=args.verbose)
    project = args.project or f"{args.recipe}_{args.preset}_{hypermodel.bits}bits"
    tuner = build_tuner(args.tuner, hypermodel, directory=args.directory, project_name=project,
                        trials=args.trials, max_epochs=args.max_epochs, factor=args.factor,
                        hyperband_iterations=args.hyperband_iterations, seed=args.tuner_seed,
                        overwrite=args.overwrite)
    role = os.environ.get("KERASTUNER_TUNER_ID", "")
    entries = "; ".join(f"{name}: {text}" for name, text in hypermodel.space.describe().items())
    print(f"Searching {entries} of {hypermodel.config_path} (--preset {args.preset}, "
          f"{hypermodel.bits} bits, {args.tuner}) by {hypermodel.objective_name} on a validation carve-out of "
          f"the training images, in {tuner.project_dir}" + (f" as {role}" if role else ""), flush=True)
    tuner.search(verbose=0)
    if distribute_utils.has_chief_oracle() and not distribute_utils.is_chief_oracle():
        print(f"{role}: no trial left.")
        return None
    written = write_outputs(tuner)
    print(f"{len(tuner.oracle.trials)} trials in {time.perf_counter() - started:.1f} s. Wrote {written['table']}, "
          f"{written['plot']}" + (f" and {written['best_config']}" if "best_config" in written else "") + ".")
    if "best" in written:
        best = written["best"]
        print(f"Best: trial {best['trial']}, {hypermodel.objective_name} {best[hypermodel.objective_name]:.4f}. "
              f"Evaluate it on the protocol's queries: python -m tfhash.recipes.{args.recipe} --config "
              f"{written['best_config']} --preset {args.preset}" + "".join(f" {flag}" for flag in recipe_flags))
    return written


if __name__ == "__main__":
    main()
