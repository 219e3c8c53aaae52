"""The settings of a training run: `TrainConfig`, checked up front.

Free of Keras imports (until a changed network must be built to check the
parameter cap), so that `train.py` reports bad input in one line, fast.
"""

import dataclasses
import math
import os
import shlex

from keras_resnet.backend import configured_backend
from keras_resnet.checks import is_positive_ints
from keras_resnet.presets import PARAM_CAP
from keras_resnet.presets import PRESETS
from keras_resnet.presets import with_recipe

REFERENCE_BATCH_SIZE = 128
SCHEDULES = ("cosine", "step")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
AUGMENT_PLACES = ("host", "device")
FLIPS = ("random", "alternating")
TTA_VIEWS = ("flip", "flip-shift")  # keys of evaluate.TTA_TRANSFORMS
JIT_CHOICES = ("auto", "on", "off")


class ConfigError(ValueError):
    """A setting is invalid; the message names it and the accepted values."""


# Larger numbers are no setting (JSON's integers have no bound, and
# float() of one past about 1e308 raises OverflowError).
MAX_NUMBER = 1e300
# More epochs overflowed the schedule's int64 step count.
MAX_EPOCHS = 1_000_000
# Where runs go without --output-dir: <RUNS_ROOT>/<preset>.
RUNS_ROOT = "runs"
# Where models are exported without --export-dir/--model-name:
# <EXPORT_ROOT>/<MODEL_NAME>/<version>, TF Serving's model name.
EXPORT_ROOT = "saved_models"
MODEL_NAME = "keras_resnet"

# What each field annotation accepts ("float" takes ints too).
_KINDS = {
    "str": "str", "str | None": "str", "int": "int", "int | None": "int",
    "float": "float", "float | None": "float", "bool": "bool",
    "list | None": "a non-empty list of positive integers",
}


def _is_kind(value, kind):
    if kind == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == "int":
        return isinstance(value, int)
    if kind == "float":
        return isinstance(value, (int, float))
    if kind == "a non-empty list of positive integers":  # widths and block counts
        return is_positive_ints(value)
    return isinstance(value, str)


@dataclasses.dataclass
class TrainConfig:
    """Every setting of a training run; `config.json` is this, as JSON.

    `learning_rate` is the peak rate at batch size 128; it is scaled linearly
    with the batch size. `weight_decay` is decoupled, as Keras' optimizers
    apply it: each step multiplies the weights by `1 - lr * weight_decay`,
    outside the momentum, so 1e-2 here matches the coupled L2 decay of 1e-3
    that PyTorch's SGD would apply at momentum 0.9. `None` for `dropout`,
    `bn_momentum`, `stage_filters` and `stage_blocks` means the preset's
    value.
    """

    preset: str = "seed"
    epochs: int = 200
    batch_size: int = 128
    learning_rate: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-2
    schedule: str = "cosine"
    warmup_epochs: float = 2.0
    label_smoothing: float = 0.1
    dropout: float | None = None
    stage_filters: list | None = None
    stage_blocks: list | None = None
    crop_padding: int = 4
    cutout: int = 0
    flip: str = "random"
    ema: float = 0.0
    lookahead: float = 0.0
    offset_lr_scale: float = 1.0
    bn_momentum: float | None = None
    train_size: int | None = None
    validation_size: int = 0
    target_accuracy: float | None = None
    augment_on: str | None = None
    precision: str = "float32"
    jit_compile: str = "auto"
    seed: int = 0
    data_dir: str | None = None
    output_dir: str | None = None
    checkpoint_seconds: float = 30.0
    tta_views: str = "flip"
    export_dir: str = EXPORT_ROOT
    model_name: str = MODEL_NAME
    export: bool = True
    distribute: bool = False
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None

    # Settings that do not change what is trained (where things go, how
    # often checkpoints are written, how the result is evaluated): a run
    # folder may be resumed with other values of these.
    PLACEMENT_KEYS = (
        "data_dir", "output_dir", "checkpoint_seconds", "tta_views", "export_dir", "model_name", "export",
        "distribute", "coordinator_address", "num_processes", "process_id",
    )

    PATH_KEYS = ("data_dir", "output_dir", "export_dir")  # `~` expanded in `from_dict`

    def __post_init__(self):
        # Widths given as tuples in Python compare unequal to the lists that
        # config.json holds: the run's own folder would be "other settings".
        for key in ("stage_filters", "stage_blocks"):
            if isinstance(getattr(self, key), tuple):
                setattr(self, key, list(getattr(self, key)))

    @property
    def several_processes(self):
        """Whether this process is one of several training one model (JAX multi-host)."""
        return (self.num_processes or 1) > 1

    @classmethod
    def from_preset(cls, preset="seed", **settings):
        """A config with `preset`'s recipe (its epochs, batch size, crops,
        flips... as `train.py --preset` starts from them) under `settings`.
        `TrainConfig(preset=...)` alone keeps the `seed` recipe's defaults.

        Args:
            preset: a preset's name (`seed`, `fast`, `fast-cpu`, `best`).
            **settings: any other fields, over the recipe.

        Example:
        ```python
        config = TrainConfig.from_preset("fast-cpu", epochs=1)
        config.batch_size  # 256, fast-cpu's
        ```
        """
        return cls(**with_recipe({"preset": preset, **settings}))

    @classmethod
    def from_dict(cls, values, source="config"):
        """Builds a config from a dict, rejecting unknown keys and bad types."""
        if not isinstance(values, dict):
            raise ConfigError(
                f"{source}: expected a JSON object of settings, got {type(values).__name__}."
            )
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ConfigError(
                f"{source}: unknown setting(s) {unknown}. Known: {sorted(fields)}."
            )
        _check_kinds(values, source)
        for key in cls.PATH_KEYS:  # a JSON file's "~/runs" is not the shell's to expand
            if isinstance(values.get(key), str):
                values = {**values, key: os.path.expanduser(values[key])}
        config = cls(**values)
        config.validate()
        return config

    def validate(self):
        def fail(message):
            raise ConfigError(message)

        # A config built in Python (`TrainConfig(seed=1.5)`) has had no
        # `from_dict`: its types failed deep in Keras, after the run folder
        # was written.
        _check_kinds({f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, "TrainConfig")

        if self.preset not in PRESETS:
            fail(f"--preset: unknown preset {self.preset!r}; choose from {sorted(PRESETS)}.")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                fail(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}.")
        if self.epochs > MAX_EPOCHS:
            fail(f"--epochs must be at most {MAX_EPOCHS:,}, got {self.epochs!r}.")
        if self.train_size is not None and (not isinstance(self.train_size, int) or self.train_size < 1):
            fail(f"--train-size must be a positive integer, got {self.train_size!r}.")
        if not isinstance(self.validation_size, int) or self.validation_size < 0:
            fail(f"--validation-size must be >= 0, got {self.validation_size!r}.")
        for name in ("learning_rate", "momentum", "weight_decay", "warmup_epochs",
                     "label_smoothing", "ema", "lookahead", "offset_lr_scale", "bn_momentum",
                     "dropout", "target_accuracy",
                     "checkpoint_seconds"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                fail(f"--{name.replace('_', '-')} must be a finite number, got {value!r}.")
        backend = configured_backend()
        if backend.name == "torch":  # as layers.seed_limit, before Keras loads
            if not 0 <= self.seed < 2**31:
                fail(f"--seed must be in [0, 2**31) on {backend}, whose seed generators "
                     f"hold int32, got {self.seed!r}.")
        elif not 0 <= self.seed < 2**32:
            fail(f"--seed must be in [0, 2**32), got {self.seed!r}.")
        if not (isinstance(self.learning_rate, (int, float)) and self.learning_rate > 0):
            fail(f"--learning-rate must be positive, got {self.learning_rate!r}.")
        if not 0 <= self.momentum < 1:
            fail(f"--momentum must be in [0, 1), got {self.momentum!r}.")
        if self.weight_decay < 0:
            fail(f"--weight-decay must be >= 0, got {self.weight_decay!r}.")
        if not 0 <= self.label_smoothing < 1:
            fail(f"--label-smoothing must be in [0, 1), got {self.label_smoothing!r}.")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            fail(f"--dropout must be in [0, 1), got {self.dropout!r}.")
        if self.bn_momentum is not None and not 0 <= self.bn_momentum < 1:
            fail(f"--bn-momentum must be in [0, 1), got {self.bn_momentum!r}.")
        if not self.offset_lr_scale > 0:
            fail(f"--offset-lr-scale must be positive (1 = off), got {self.offset_lr_scale!r}.")
        if self.warmup_epochs < 0:
            fail(f"--warmup-epochs must be >= 0, got {self.warmup_epochs!r}.")
        for name in ("ema", "lookahead"):
            if not 0 <= getattr(self, name) < 1:
                fail(f"--{name} must be in [0, 1) (0 = off), got {getattr(self, name)!r}.")
        if self.lookahead and self.ema:
            fail("--lookahead and --ema both average the weights; choose one.")
        if self.checkpoint_seconds < 0:
            fail(f"--checkpoint-seconds must be >= 0, got {self.checkpoint_seconds!r}.")
        if not 0 <= self.crop_padding <= 16:
            fail(f"--crop-padding must be in [0, 16] pixels (0 = no random crop), got {self.crop_padding!r}.")
        if not 0 <= self.cutout <= 32:
            fail(f"--cutout must be in [0, 32] pixels, the image's side (0 = off), got {self.cutout!r}.")
        if self.target_accuracy is not None and not 0 < self.target_accuracy <= 1:
            fail(f"--target-accuracy must be in (0, 1], got {self.target_accuracy!r}.")
        for name, choices in (
            ("schedule", SCHEDULES),
            ("flip", FLIPS),
            ("precision", PRECISIONS),
            ("jit_compile", JIT_CHOICES),
            ("tta_views", TTA_VIEWS),
        ):
            if getattr(self, name) not in choices:
                fail(f"--{name.replace('_', '-')} must be one of {list(choices)}, got {getattr(self, name)!r}.")
        if self.augment_on is not None and self.augment_on not in AUGMENT_PLACES:
            fail(f"--augment-on must be one of {list(AUGMENT_PLACES)}, got {self.augment_on!r}.")
        if self.num_processes is not None and self.num_processes < 1:  # from $KERAS_RESNET_NUM_PROCESSES
            fail(f"--num-processes must be a positive integer, got {self.num_processes!r}.")
        if self.several_processes:
            if backend.name != "jax":
                fail(
                    "--num-processes > 1 needs KERAS_BACKEND=jax (TensorFlow's "
                    "MultiWorkerMirroredStrategy is broken with Keras 3)."
                )
            if not self.coordinator_address or self.process_id is None:
                fail("--num-processes > 1 needs --coordinator-address HOST:PORT and --process-id.")
            # JAX took "localhost" with an IndexError, and a port out of
            # range as an address it waited 5 minutes for, then aborted. (Keras
            # takes a list, "A:1,B:2", for its first address: not needed.)
            host, _, port = self.coordinator_address.rpartition(":")
            if not host or "," in host or not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
                fail(
                    "--coordinator-address (or $KERAS_RESNET_COORDINATOR) must be HOST:PORT, process "
                    f"0's host and a port from 1 to 65535, got {self.coordinator_address!r}."
                )
            if not 0 <= self.process_id < self.num_processes:
                fail(f"--process-id must be in [0, {self.num_processes}), got {self.process_id}.")
            if self.augment_on == "host":
                fail(
                    "--num-processes > 1 shards the training batches on the device: drop "
                    "--augment-on host (several processes augment on the device)."
                )
        from keras_resnet.paths import can_create_folder  # it imports this module
        from keras_resnet.paths import data_dir_problem
        from keras_resnet.paths import empty_folder_problem
        from keras_resnet.paths import model_name_problem

        for value, flag, default in ((self.output_dir, "--output-dir", f"{RUNS_ROOT}/<preset>"),
                                     (self.export_dir, "--export-dir", EXPORT_ROOT)):
            if problem := empty_folder_problem(value, flag, default):
                fail(problem)
        if self.output_dir is not None and os.path.isfile(self.output_dir):
            fail(f"--output-dir {self.output_dir!r} is a file, not a folder.")
        if self.output_dir is not None and not can_create_folder(self.output_dir):
            fail(f"--output-dir {self.output_dir!r} cannot be created or written to as a folder.")
        if self.coordinator_address and not self.several_processes:  # was ignored
            fail(
                f"--coordinator-address {self.coordinator_address} (or $KERAS_RESNET_COORDINATOR) is "
                "for runs of several JAX processes: pass --num-processes N > 1 with it, or drop it."
            )
        if self.process_id not in (None, 0) and not self.several_processes:
            # Another process than 0 skips the export, and on its own its
            # share of every batch is empty.
            fail(
                f"--process-id {self.process_id} (or $KERAS_RESNET_PROCESS_ID) is for runs of "
                "several JAX processes: pass --num-processes N > 1 with it, or drop it."
            )
        if self.export and (problem := model_name_problem(self.model_name)):
            fail(problem)
        from keras_resnet.export import export_root_problem  # it imports this module

        if self.export and (problem := export_root_problem(self.export_dir, self.model_name)):
            fail(problem)
        if self.export and not can_create_folder(os.path.join(self.export_dir, self.model_name)):
            fail(
                f"--export-dir {self.export_dir!r} with --model-name {self.model_name!r}: "
                f"{os.path.join(self.export_dir, self.model_name)!r} cannot be created or "
                "written to as a folder."
            )
        if problem := data_dir_problem(self.data_dir):
            fail(problem)

    def check_model(self):
        """Counts a changed network's parameters (`count_params`: its graph
        only, no weights), so that bad widths and the parameter cap are
        reported before any data is read or folder written. Raises
        `ConfigError`."""
        overrides = self.model_overrides()
        if overrides:
            from keras_resnet.model import count_params

            try:
                params = count_params(self.preset, allow_over_cap=True, **overrides)
            except ValueError as e:
                raise ConfigError(str(e)) from None
            if params > PARAM_CAP:  # build_model's advice is a Python argument
                raise ConfigError(
                    f"--stage-filters/--stage-blocks give {params:,} parameters, over the "
                    f"cap of {PARAM_CAP:,}: use narrower or fewer stages, or fewer blocks."
                )

    def model_overrides(self):
        overrides = {}
        for key in ("dropout", "bn_momentum", "stage_filters", "stage_blocks"):
            if getattr(self, key) is not None:
                overrides[key] = getattr(self, key)
        if "stage_filters" in overrides or "stage_blocks" in overrides:
            preset = PRESETS[self.preset]
            filters = overrides.get("stage_filters", preset["stage_filters"])
            blocks = overrides.get("stage_blocks", preset["stage_blocks"])
            if len(filters) != len(blocks):
                raise ConfigError(stage_count_mismatch(filters, blocks, set(overrides)))
            if len(filters) != len(preset["stage_strides"]):
                # Keep the preset's first stride; later stages halve.
                overrides["stage_strides"] = [preset["stage_strides"][0]] + [2] * (len(filters) - 1)
        return overrides

    def to_dict(self):
        return dataclasses.asdict(self)

    def identity(self):
        """The settings that define what is trained (for resume checks)."""
        return {k: v for k, v in self.to_dict().items() if k not in self.PLACEMENT_KEYS}

    @classmethod
    def saved_identity(cls, saved):
        """`identity()` of a run from its saved `config.json` (a dict): a
        setting added after the run was made has its default there."""
        return {**cls().identity(),
                **{k: v for k, v in saved.items() if k not in cls.PLACEMENT_KEYS}}


def _check_kinds(values, source):
    """Refuses a setting of `values` (a dict) of the wrong type, or a number
    too large to train with; `source` names where the settings come from."""
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    for key, value in values.items():
        annotation = fields[key].type
        annotation = annotation.__name__ if isinstance(annotation, type) else str(annotation)
        if value is None and annotation.endswith("| None"):
            continue
        kind = _KINDS[annotation]
        if not _is_kind(value, kind):
            items = value if isinstance(value, (list, tuple)) else [value]
            numpy = any(type(item).__module__ == "numpy" for item in [value, *items])
            raise ConfigError(
                f"{source}: {key} must be {kind}, got {value!r} ({type(value).__name__})"
                + (": pass Python numbers (`.item()` of a NumPy scalar, `.tolist()` of an "
                   "array)." if numpy else ".")
            )
        # (Infinity and NaN: `validate` names the flag.)
        if kind in ("int", "float") and abs(value) > MAX_NUMBER and (
            isinstance(value, int) or math.isfinite(value)
        ):
            name = f"--{key.replace('_', '-')}" if source == "flags" else f"{source}: {key}"
            shown = (f"{value:.3g}" if isinstance(value, float)
                     else f"an integer of {len(str(abs(value)))} digits")
            raise ConfigError(f"{name} must be at most {MAX_NUMBER:g} in size, got {shown}.")


def check_train_config(config):
    """A `TrainConfig`, which `train`, `tune.search` and `ResNetHyperModel`
    take (a dict of settings failed with an `AttributeError` inside)."""
    if not isinstance(config, TrainConfig):
        hint = ": pass TrainConfig(**config)" if isinstance(config, dict) else ""
        raise ConfigError(f"`config` must be a TrainConfig{hint}. Received: config={config!r}")


def blame_environment(message, from_environment):
    """`message` about a setting taken from an environment variable
    (`from_environment`: setting -> variable) names the variable, which the
    user may not know is set, not the flag they did not pass."""
    for key, variable in from_environment.items():
        flag = f"--{key.replace('_', '-')}"
        if message.startswith((f"{flag}:", f"{flag} must")):
            return f"${variable} (read for {flag}){message[len(flag):]}"
    return message


def new_run_command(run):
    """The command that trains the settings of the run in folder `run` again,
    into a new folder; the advice `--resume` can take (it refuses
    --overwrite and --output-dir)."""
    config_file = shlex.quote(os.path.join(run, "config.json"))
    return f"python train.py --config {config_file} --output-dir NEW_FOLDER"


def stage_count_mismatch(filters, blocks, given):
    """The error for widths and block counts of different lengths; `given`
    holds the ones that flags set (the others are the preset's)."""
    def flag(key, values):
        text = f"--{key.replace('_', '-')} {','.join(map(str, values))}"
        return text if key in given else f"{text} (the preset's)"

    if "stage_blocks" not in given:
        ones = ",".join(["1"] * len(filters))
        fix = f"pass --stage-blocks with {len(filters)} values too, e.g. --stage-blocks {ones}"
    elif "stage_filters" not in given:
        fix = f"pass --stage-filters with {len(blocks)} widths too"
    else:
        fix = "give both as many values"
    return (
        f"{flag('stage_filters', filters)} names {len(filters)} stages, but "
        f"{flag('stage_blocks', blocks)} names {len(blocks)}: {fix}."
    )


def prepare_environment(config):
    """Environment settings that must be made before TensorFlow loads.

    TensorFlow turns its oneDNN CPU kernels on by itself only on CPUs with
    AVX-512 neural-network instructions (VNNI, BF16, AMX). On AVX2 CPUs
    (AMD EPYC, most desktop CPUs) it runs Eigen's kernels instead, and
    training ran 4 to 6 times slower there (a 2-core AMD EPYC: the seed
    network 30.8 images/s against 171.6, `fast-cpu` 71.6 against 298.9;
    docs/benchmarks.md), so oneDNN is turned on.
    In bfloat16 training TF 2.21's oneDNN kernels corrupt the heap (seen on
    this project's CPUs), so it is turned off for `mixed_bfloat16`. oneDNN
    is CPU-only: a GPU gains and loses nothing. A value the user set in
    `TF_ENABLE_ONEDNN_OPTS` is kept.
    """
    onednn = "0" if config.precision == "mixed_bfloat16" else "1"
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", onednn)
