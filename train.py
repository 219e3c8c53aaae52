"""Train a keras-resnet model on CIFAR-10: `python train.py --epochs 200`.

Every flag maps to a `TrainConfig` field; `--config FILE` reads them from a
JSON file, and flags on the command line override the file. Ends with one
JSON line of results; bad input exits with status 2 and one line.
"""

import argparse
import json
import os
import shlex
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_resnet import cli  # noqa: E402  (Keras-free)


def build_parser():
    from keras_resnet.config import AUGMENT_PLACES
    from keras_resnet.config import EXPORT_ROOT
    from keras_resnet.config import FLIPS
    from keras_resnet.config import JIT_CHOICES
    from keras_resnet.config import MODEL_NAME
    from keras_resnet.config import PRECISIONS
    from keras_resnet.config import SCHEDULES
    from keras_resnet.config import TTA_VIEWS
    from keras_resnet.presets import PRESETS

    p = cli.ArgumentParser(prog="train.py", description=__doc__.splitlines()[0], trains=True,
                           argument_default=argparse.SUPPRESS,
                           epilog="The defaults are the seed recipe's; --preset fast, fast-cpu and "
                                  "best start from their own recipes (README: the presets table).")
    p.add_argument("--config", type=cli.path, help="JSON file of settings (flags override it)")
    p.add_argument("--preset", choices=sorted(PRESETS), help="network preset (default seed)")
    p.add_argument("--epochs", type=cli.positive_int, help="epochs (default 200)")
    p.add_argument("--batch-size", type=cli.positive_int, help="batch size (default 128)")
    p.add_argument("--learning-rate", type=float, help="peak rate at batch 128, scaled with the batch (default 0.1)")
    p.add_argument("--momentum", type=float, help="Nesterov momentum (default 0.9)")
    p.add_argument("--weight-decay", type=float, help="decoupled weight decay: weights shrink by lr*X per step (default 1e-2)")
    p.add_argument("--schedule", choices=SCHEDULES, help="cosine with warmup (default) or step")
    p.add_argument("--warmup-epochs", type=float, help="linear warmup epochs of the cosine schedule; step has none (default 2)")
    p.add_argument("--label-smoothing", type=float, help="default 0.1")
    p.add_argument("--dropout", type=float, help="dropout before the classifier (default: the preset's)")
    p.add_argument("--stage-filters", type=cli.positive_int_list, help="widths per stage, e.g. 64,128,256,512")
    p.add_argument("--stage-blocks", type=cli.positive_int_list, help="blocks per stage, e.g. 1,1,1,1")
    p.add_argument("--crop-padding", type=int, help="pixels of reflection padding before the random crop, 0 = no crop (default 4)")
    p.add_argument("--cutout", type=int, help="cutout square size in pixels, 0 = off (default)")
    p.add_argument("--flip", choices=FLIPS,
                   help="mirror each image at random (default) or in every other epoch")
    p.add_argument("--ema", type=float, help="momentum of a weight EMA used at the end, e.g. 0.999; 0 = off (default)")
    p.add_argument("--lookahead", type=float,
                   help="Lookahead: every 5 steps the weights restart from their average, whose momentum "
                        "ramps up to X, e.g. 0.95; 0 = off (default)")
    p.add_argument("--offset-lr-scale", type=float,
                   help="factor on the learning rate of batch-norm offsets (beta), e.g. 64 as in airbench; "
                        "1 = off (default; fast, fast-cpu: 16)")
    p.add_argument("--bn-momentum", type=float,
                   help="momentum of batch norm's moving statistics (default: the preset's, 0.9)")
    p.add_argument("--train-size", type=cli.positive_int, help="use the first N training images")
    p.add_argument("--validation-size", type=int, help="validation images cut from the training set (default 0)")
    p.add_argument("--target-accuracy", type=float, help="stop once (val_)accuracy reaches this")
    p.add_argument("--augment-on", choices=AUGMENT_PLACES, help="host (tf.data) or device (in the train step)")
    p.add_argument("--precision", choices=PRECISIONS, help="default float32")
    p.add_argument("--jit-compile", choices=JIT_CHOICES, help="XLA: auto (the default: GPU/JAX on, TF-CPU off)")
    p.add_argument("--seed", type=int, help="seeds weights, order, augmentation and the validation split (default 0)")
    p.add_argument("--data-dir", type=cli.path, help="python-version CIFAR-10 folder (default $CIFAR10_DIR, else tfds)")
    p.add_argument("--output-dir", type=cli.path, help="run folder (default runs/<preset>)")
    p.add_argument("--tta-views", choices=TTA_VIEWS,
                   help="test-time augmentation behind *_accuracy_tta: flip (default) or flip-shift")
    p.add_argument("--checkpoint-seconds", type=float,
                   help="least seconds between checkpoints, 0 = every epoch; the last epoch is always saved (default 30)")
    p.add_argument("--resume", metavar="RUN_DIR", type=cli.path, help="resume the run in RUN_DIR with its saved settings")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--export-dir", type=cli.path, help=f"SavedModel root (default {EXPORT_ROOT})")
    p.add_argument("--model-name", help=f"SavedModel name (default {MODEL_NAME})")
    p.add_argument("--no-export", dest="export", action="store_false", help="skip the SavedModel export")
    p.add_argument("--distribute", action="store_true", help="data-parallel over every visible device")
    p.add_argument("--coordinator-address", help="JAX multi-host: HOST:PORT of process 0 ($KERAS_RESNET_COORDINATOR)")
    p.add_argument("--num-processes", type=cli.positive_int, help="JAX multi-host: number of processes ($KERAS_RESNET_NUM_PROCESSES)")
    p.add_argument("--process-id", type=int, help="JAX multi-host: this process's id ($KERAS_RESNET_PROCESS_ID)")
    return p


def _as_flag_value(value):
    if value is None:
        return "the preset's"
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def check_resumable(run, saved, config):
    """Refuses `--resume` of a finished run, or with flags that change what
    the run trains (`saved`, its config.json, against `config`, with the
    flags): the advice `train()` gives for those is `--overwrite`, which
    `--resume` takes no part in."""
    from keras_resnet.config import ConfigError
    from keras_resnet.config import TrainConfig
    from keras_resnet.config import new_run_command

    new_run = new_run_command(run)
    if os.path.isfile(os.path.join(run, "metrics.json")):
        raise ConfigError(
            f"--resume: {run} holds a finished run; nothing to resume. To train it again "
            f"with its settings: {new_run} (or --output-dir {shlex.quote(run)} --overwrite, "
            "which deletes the finished run)."
        )
    identity, before = config.identity(), TrainConfig.saved_identity(saved)
    changed = sorted(k for k in identity if identity[k] != before[k])
    if changed:
        flags = [f"--{k.replace('_', '-')} {_as_flag_value(identity[k])}" for k in changed]
        had = ", ".join(f"{_as_flag_value(before[k])}" for k in changed)
        raise ConfigError(
            f"--resume continues {run} with its own settings, which {', '.join(flags)} would "
            f"change (the run has {had}); drop the flag, or start a new run with it: "
            f"{new_run} {' '.join(flags)}"
        )


def _template_run(config_path):
    """The run folder whose own config.json `config_path` is, or None."""
    folder = os.path.dirname(os.path.abspath(config_path))
    written_by_a_run = ("layout.json", "history.csv")
    if os.path.basename(config_path) == "config.json" and any(
            os.path.isfile(os.path.join(folder, name)) for name in written_by_a_run):
        return os.path.dirname(config_path) or "."
    return None


def _folder_beside_template(run, settings, config):
    """Where a run of `config` goes without --output-dir when its --config
    file is the run folder `run`'s own (`settings`): `run`, to resume it,
    if it is unfinished and `config` changes none of its settings; else
    None, the next free runs/<preset>. The file's output_dir names where
    that run was trained, another folder if it was moved or copied, and
    sent the new run there, where --overwrite deleted a run."""
    from keras_resnet.config import TrainConfig

    if (not os.path.isfile(os.path.join(run, "metrics.json"))
            and TrainConfig.saved_identity(settings) == config.identity()):
        return run
    print(f"A new run with the settings of {run}, which is left as it is.")
    return None


def _overwrite_needs_a_folder(preset):
    from keras_resnet.config import RUNS_ROOT
    from keras_resnet.config import ConfigError

    return ConfigError(  # else it would train into a new runs/<preset>-N, deleting nothing
        "--overwrite replaces the run in --output-dir; name the folder to replace, e.g. "
        f"--output-dir {RUNS_ROOT}/{preset} --overwrite."
    )


def _no_run_to_resume(run):
    """Why `--resume run` finds no config.json there, and what to pass."""
    if not run:
        return "--resume is empty: name the folder of the run to resume."
    if os.path.isfile(run):  # RUN/config.json, a tab completion too far
        folder = os.path.dirname(run) or os.curdir
        fix = (f"its folder, {folder}" if os.path.isfile(os.path.join(folder, "config.json"))
               else "the run's folder")
        return f"--resume {run} is a file, not a run folder: pass {fix}."
    if not os.path.isdir(run):
        return f"--resume: no such folder {run}."
    return f"--resume: {run} holds no config.json of a run."


def config_from_args(args):
    """The `TrainConfig` of the parsed command line: the flags over a
    resumed run's saved settings, or over `--config` over the preset's
    recipe; then the environment (`$CIFAR10_DIR`, `$KERAS_RESNET_*`) for
    what no flag gives. Raises `ConfigError` for flags that conflict, a
    bad value, or a `--resume` that would change the run."""
    from keras_resnet.config import ConfigError
    from keras_resnet.config import TrainConfig
    from keras_resnet.config import blame_environment
    from keras_resnet.paths import read_json_object

    values, saved = {}, None
    if "resume" in args:
        for flag in ("overwrite", "output_dir", "config"):
            if getattr(args, flag, None):
                raise ConfigError(
                    f"--resume continues the run in its own folder, with its own settings; "
                    f"drop --{flag.replace('_', '-')}."
                )
        path = os.path.join(args.resume, "config.json")
        if not os.path.isfile(path):
            raise ConfigError(_no_run_to_resume(args.resume))
        saved = read_json_object(path, "--resume: the run's settings", "fix or restore it.")
        values.update(saved)
        values["output_dir"] = args.resume
    if "config" in args:
        settings = read_json_object(args.config, "--config", "pass a JSON object of settings.")
        values.update(settings)
    template = _template_run(args.config) if "config" in args and "output_dir" not in args else None
    flags = {k: v for k, v in vars(args).items() if k not in ("config", "resume", "overwrite")}
    values.update(flags)
    if "resume" not in args:  # the preset's recipe, under the file and flags
        from keras_resnet.presets import with_recipe

        values = with_recipe(values)
    if getattr(args, "overwrite", False) and not values.get("output_dir"):
        raise _overwrite_needs_a_folder(values.get("preset", "seed"))
    from_environment = {}
    for key, variable, kind in (
        ("data_dir", "CIFAR10_DIR", str),
        ("coordinator_address", "KERAS_RESNET_COORDINATOR", str),
        ("num_processes", "KERAS_RESNET_NUM_PROCESSES", int),
        ("process_id", "KERAS_RESNET_PROCESS_ID", int),
    ):
        # The environment fills what no flag gives, over a resumed run's
        # saved placement too: each process of a run has its own id.
        unset = values.get(key) is None or (saved is not None and key not in flags)
        if unset and os.environ.get(variable):
            try:
                values[key] = kind(os.environ[variable])
            except ValueError:
                raise ConfigError(
                    f"${variable} must be {kind.__name__}, got {os.environ[variable]!r}."
                ) from None
            from_environment[key] = variable
    try:
        if saved is None:
            config = TrainConfig.from_dict(values, source=args.config if "config" in args else "flags")
            if template:
                config.output_dir = _folder_beside_template(template, settings, config)
                if config.output_dir is None and getattr(args, "overwrite", False):
                    raise _overwrite_needs_a_folder(config.preset)
            return config
        # A bad value is the run's file's (the flags' types are checked as parsed).
        config = TrainConfig.from_dict(values, source=path)
    except ConfigError as e:
        raise ConfigError(blame_environment(str(e), from_environment)) from None
    check_resumable(args.resume, saved, config)
    return config


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)

    from keras_resnet.config import ConfigError
    from keras_resnet.config import prepare_environment

    try:  # flags and settings first, before Keras and a backend load
        config = config_from_args(args)
        prepare_environment(config)
    except ConfigError as e:
        parser.exit(2, f"train.py: error: {e}\n")

    try:  # Keras and the backend load here, for seconds
        from callbacks import TrainingDiverged
        from callbacks import backup_epochs
        from keras_resnet.data import DataError
        from keras_resnet.export import ExportError
        from keras_resnet.run_folder import default_output_dir
        from keras_resnet.training import train
    except KeyboardInterrupt:
        print("\nInterrupted while starting; nothing was written.", file=sys.stderr)
        return 130

    try:
        metrics = train(config, overwrite=getattr(args, "overwrite", False))
    except (ConfigError, DataError) as e:
        parser.exit(2, f"train.py: error: {e}\n")
    except TrainingDiverged as e:
        # This command would resume the run and diverge again, and the run
        # folder refuses another learning rate.
        run_dir = getattr(e, "run_dir", None) or config.output_dir
        parser.exit(1, f"train.py: error: {e} The run stays in {run_dir}; train again with a lower "
                       f"--learning-rate and a new --output-dir (--overwrite would delete {run_dir}).\n")
    except ExportError as e:
        parser.exit(1, f"train.py: error: {e}\n")
    except KeyboardInterrupt as e:
        # Without --output-dir the folder is chosen after the data loads:
        # `train` names it, or, stopped before that, the one this command
        # would resume, if any.
        run_dir = config.output_dir or getattr(e, "run_dir", None) or default_output_dir(config)
        epochs = backup_epochs(os.path.join(run_dir, "backup"))
        seconds = config.checkpoint_seconds
        # --checkpoint-seconds is the least time between backups, not the most.
        spacing = (f"a backup is written at an epoch's end, at most every --checkpoint-seconds {seconds:g}"
                   if seconds else "a backup is written at every epoch's end: --checkpoint-seconds 0")
        if epochs:
            print(
                f"\nInterrupted. The run is saved in {run_dir}/backup after epoch {epochs} ({spacing}).\n"
                f"Resume with: {resume_command(run_dir)}",
                file=sys.stderr,
            )
        else:  # the Ctrl-C may have written checkpoints/best.keras: no backup to resume
            print(f"\nInterrupted before the first backup was written ({spacing}); nothing to resume.",
                  file=sys.stderr)
        return 130
    print(json.dumps(metrics))
    return 0


def resume_command(run_dir):
    """The command that resumes `run_dir` on the backend that trained it (a
    plain shell would take TensorFlow, and the rest of a JAX run with it)."""
    import keras

    backend = keras.backend.backend()
    prefix = "" if backend == "tensorflow" else f"KERAS_BACKEND={backend} "
    return f"{prefix}python train.py --resume {shlex.quote(run_dir)}"


if __name__ == "__main__":
    sys.exit(cli.run_command(main, "train.py"))
