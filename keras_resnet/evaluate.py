"""Evaluation: test accuracy with and without test-time augmentation, the
per-class picture, and `python -m keras_resnet.evaluate`, which writes them
as a report with the plots of `plots.py`.

```
python -m keras_resnet.evaluate --model runs/seed/model.keras --data-dir DIR
python -m keras_resnet.evaluate --model saved_models/keras_resnet --tta
```

The model is a `.keras` file or an exported SavedModel (a version folder, or
a model folder: its highest version). The report goes to `--output-dir`:
`confusion_matrix.png`, `mistakes.png` (the most confidently misclassified
test images), `loss.png`, `accuracy.png` and `learning_rate.png` (from the
run's `history.csv`) and `evaluation.json`; the same results end the output
as one JSON line.
"""

import json
import os
import sys

import numpy as np

from keras_resnet import cli
from keras_resnet.atomic import write_json_atomic
from keras_resnet.checks import check_class_names
from keras_resnet.checks import check_classifier
from keras_resnet.checks import check_confusion_matrix
from keras_resnet.checks import check_images
from keras_resnet.checks import check_int
from keras_resnet.checks import check_path
from keras_resnet.checks import check_probabilities
from keras_resnet.classifier import ModelError
from keras_resnet.classifier import load_classifier
from keras_resnet.classifier import saved_model_name
from keras_resnet.config import blame_environment
from keras_resnet.data import CLASS_NAMES
from keras_resnet.data import class_labels
from keras_resnet.paths import can_create_folder
from keras_resnet.paths import data_dir_problem
from keras_resnet.paths import empty_folder_problem
from keras_resnet.plots import CURVES
from keras_resnet.plots import MAX_MISTAKES
from keras_resnet.plots import plot_confusion_matrix
from keras_resnet.plots import plot_mistakes
from keras_resnet.plots import plot_training_curves
from keras_resnet.presets import NUM_CLASSES


# --------------------------------------------------------------------------
# Predictions and metrics.


def flip_left_right(images):
    """Mirrors a batch of NHWC images left-right."""
    return images[:, :, ::-1]


def shift(down, right):
    """A transform that moves NHWC images `down` and `right` pixels (negative:
    up, left), filling the edge by reflection like the training crop."""

    def shifted(images):
        pad = max(abs(down), abs(right))
        padded = np.pad(images, [(0, 0), (pad, pad), (pad, pad), (0, 0)], mode="reflect")
        height, width = images.shape[1:3]
        top, left = pad - down, pad - right
        return padded[:, top : top + height, left : left + width]

    shifted.__name__ = f"shift_{down}_{right}"
    return shifted


def _flipped(transform):
    return lambda images: transform(flip_left_right(images))


# Test-time augmentations: the views averaged besides the images themselves.
# "flip": the mirror images. "flip-shift": the mirror images, and both
# (plain and mirrored) moved one pixel up-left and one down-right.
_ONE_PIXEL = (shift(-1, -1), shift(1, 1))
TTA_TRANSFORMS = {
    "flip": (flip_left_right,),
    "flip-shift": (flip_left_right, *_ONE_PIXEL, *(_flipped(t) for t in _ONE_PIXEL)),
}
FLIP_TTA = TTA_TRANSFORMS["flip"]


def predict_views(model, images, transforms=(), batch_size=256, verbose=0):
    """Class probabilities of the images, then of each transform of them.

    Args:
        model: a Keras model, or anything with
            `predict(images, batch_size=..., verbose=...)`.
        images: uint8 or float (N, 32, 32, 3) images in 0-255.
        transforms: functions from an image batch to an image batch of the
            same shape (e.g. `flip_left_right`).

    Returns:
        A list of `1 + len(transforms)` arrays of shape (N, classes).

    Raises:
        ValueError: `model` has no `predict` (a path: `load_classifier`
            loads it), `transforms` is not a list or tuple of functions,
            or `images` or `batch_size` are not what is said above.
    """
    check_classifier("model", model)
    check_int("batch_size", batch_size)
    images = check_images("images", images)
    # A larger batch is one batch of every image, as Keras' predict makes
    # it; past a C long (2**63) Keras raised an OverflowError.
    batch_size = min(batch_size, len(images))
    if not (isinstance(transforms, (list, tuple)) and all(callable(t) for t in transforms)):
        hint = ""
        if isinstance(transforms, str) and transforms in TTA_TRANSFORMS:  # a --tta-views name
            hint = f": pass TTA_TRANSFORMS[{transforms!r}]"
        elif callable(transforms):
            hint = f": pass ({getattr(transforms, '__name__', 'transform')},)"
        raise ValueError("`transforms` must be a list or tuple of functions from an image batch to an "
                         f"image batch, () for none{hint}. Received: transforms={transforms!r}")
    views = [images] + [transform(images) for transform in transforms]
    return [
        np.asarray(model.predict(view, batch_size=batch_size, verbose=verbose))
        for view in views
    ]


def predict_tta(model, images, transforms=FLIP_TTA, batch_size=256, verbose=0):
    """The mean class probabilities over the images and their transforms.

    With `transforms=()` this is the plain prediction.

    Args:
        model, images, transforms, batch_size, verbose: as for
            `predict_views`.

    Returns:
        An array of shape (N, classes).
    """
    return np.mean(predict_views(model, images, transforms, batch_size, verbose), axis=0)


def accuracy(probabilities, labels):
    """The fraction of images whose most probable class is their label
    (labels shaped (N,) or (N, 1))."""
    probabilities = check_probabilities("probabilities", probabilities)
    labels = class_labels(labels, len(probabilities), probabilities.shape[-1])
    return float(np.mean(np.argmax(probabilities, axis=-1) == labels))


def confusion_matrix(labels, predictions, num_classes=NUM_CLASSES):
    """Counts, `matrix[true, predicted]`, of labels shaped (N,) or (N, 1)
    and predicted class indices (`np.argmax(probabilities, axis=-1)`).
    Keras has no confusion-matrix metric."""
    check_int("num_classes", num_classes)
    predictions = class_labels(predictions, None, num_classes, name="predictions")
    labels = class_labels(labels, len(predictions), num_classes)
    matrix = np.zeros((num_classes, num_classes), dtype="int64")
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def per_class_accuracy(matrix):
    """Recall of each class from a confusion matrix (`confusion_matrix`'s,
    or the list in `evaluate`'s metrics); `None` for a class without test
    images."""
    matrix = check_confusion_matrix("matrix", matrix)
    totals = matrix.sum(axis=1)
    return [
        float(matrix[c, c] / totals[c]) if totals[c] else None
        for c in range(len(matrix))
    ]


def most_confident_mistakes(probabilities, labels, count=25):
    """Indices of misclassified images, most confident prediction first."""
    check_int("count", count, minimum=0)
    probabilities = check_probabilities("probabilities", probabilities)
    labels = class_labels(labels, len(probabilities), probabilities.shape[-1])
    predictions = np.argmax(probabilities, axis=-1)
    wrong = np.flatnonzero(predictions != labels)
    confidence = probabilities[wrong, predictions[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")][:count]


def evaluate(model, images, labels, class_names=CLASS_NAMES, transforms=FLIP_TTA,
             details="plain", batch_size=256, verbose=0):
    """Test metrics of a classifier, with and without test-time augmentation.

    Args:
        model: a Keras model, or what `load_classifier` gives (a
            `KerasClassifier` or a `SavedModelClassifier`).
        images, labels: (N, 32, 32, 3) images in 0-255 and their int
            labels, shape (N,) or (N, 1).
        class_names: names of the classes, for `per_class_accuracy`.
        transforms: the test-time augmentation (see `predict_tta`).
        details: `"plain"` or `"tta"`: which predictions the confusion matrix
            and the per-class accuracy describe.

    Returns:
        `(metrics, probabilities)`: a JSON-ready dict (`test_images`,
        `test_loss`, `test_accuracy`, `test_accuracy_tta`, `details`,
        `per_class_accuracy`, `confusion_matrix`) and the probabilities that
        `details` names.

    Raises:
        ValueError: for `details`, `class_names` that are not distinct
            one-line names, or labels that are not one class index per
            image (`class_labels`).
    """
    if details not in ("plain", "tta"):
        raise ValueError(f'`details` must be "plain" or "tta". Received: {details!r}')
    check_class_names("class_names", class_names)
    images = check_images("images", images)  # before its count is taken for the labels'
    labels = class_labels(labels, len(images), len(class_names))
    views = predict_views(model, images, transforms, batch_size, verbose)
    if views[0].shape[-1] != len(class_names):
        raise ValueError(
            f"`class_names` must name each of the model's {views[0].shape[-1]} classes. "
            f"Received: {len(class_names)} names"
        )
    plain, tta = views[0], np.mean(views, axis=0)
    chosen = tta if details == "tta" else plain
    matrix = confusion_matrix(labels, np.argmax(chosen, axis=-1), len(class_names))
    true_class = plain[np.arange(len(labels)), labels]
    metrics = {
        "test_images": int(len(labels)),
        # Plain cross-entropy (no label smoothing) of the true class.
        "test_loss": float(-np.mean(np.log(np.maximum(true_class, 1e-12)))),
        "test_accuracy": accuracy(plain, labels),
        "test_accuracy_tta": accuracy(tta, labels),
        "details": details,
        "per_class_accuracy": dict(zip(class_names, per_class_accuracy(matrix))),
        "confusion_matrix": matrix.tolist(),
    }
    return metrics, chosen


# --------------------------------------------------------------------------
# The command line.


def find_run_dir(model_path):
    """The run folder of a `.keras` file (`<run>/model.keras` or
    `<run>/checkpoints/*.keras`), if it holds a `history.csv`; else `None`.
    Relative to where `model_path` is, as given (the report quotes it)."""
    check_path("model_path", model_path)
    if os.path.isdir(model_path):
        return None
    folder = os.path.dirname(model_path) or os.curdir
    for candidate in (folder, os.path.normpath(os.path.join(folder, os.pardir))):
        if os.path.isfile(os.path.join(candidate, "history.csv")):
            return candidate
    return None


def build_parser():
    p = cli.ArgumentParser(
        prog="python -m keras_resnet.evaluate",
        description="Evaluate a keras-resnet model on the CIFAR-10 test set.",
    )
    p.add_argument("--model", required=True, type=cli.path,
                   help="a .keras file, or a SavedModel folder (version or model folder)")
    p.add_argument("--data-dir", type=cli.path, help="python-version CIFAR-10 folder, of which test_batch and "
                   "batches.meta are read (default $CIFAR10_DIR, else tfds)")
    p.add_argument("--tta", action="store_true",
                   help="per-class accuracy, confusion matrix and mistakes from the TTA predictions")
    p.add_argument("--tta-views", choices=sorted(TTA_TRANSFORMS), default="flip",
                   help="test-time augmentation: flip (2 views, default) or flip-shift (6 views: "
                        "also moved 1 pixel up-left and down-right)")
    p.add_argument("--run-dir", type=cli.path, help="run folder whose history.csv to plot (default: the .keras file's run)")
    p.add_argument("--output-dir", type=cli.path, help="report folder (default <run>/evaluation/<model>, else evaluation/<model>)")
    p.add_argument("--batch-size", type=cli.int_in_range(1), default=256,
                   help="images per prediction batch (default 256)")
    p.add_argument("--mistakes", type=cli.int_in_range(0, MAX_MISTAKES), default=25,
                   help=f"images in the mistakes grid, at most {MAX_MISTAKES} (default 25; 0: no grid)")
    return p


def _display_name(model_path, model, kind):
    if kind == "saved_model":  # <model name>-<version>
        return model.name
    return f"{os.path.basename(model_path)} ({model.name})"


def default_output_dir(model_path, run_dir):
    """`<run>/evaluation/<file stem>`, else `evaluation/<file stem or
    model-version>`: one folder per model file or SavedModel version, so
    reports never mix. A folder that holds the report of another model is
    kept: then `-2`, `-3`, ... is added."""
    if run_dir and not os.path.isdir(model_path):
        stem = os.path.splitext(os.path.basename(model_path))[0]
        base = os.path.normpath(os.path.join(run_dir, "evaluation", stem))
    elif os.path.isdir(model_path):
        base = os.path.join("evaluation", saved_model_name(model_path))
    else:
        base = os.path.join("evaluation", os.path.splitext(os.path.basename(model_path))[0])
    index = 1
    while True:
        folder = base if index == 1 else f"{base}-{index}"
        reported = _reported_model(_read_report(folder))
        if reported in (None, os.path.abspath(model_path)):
            return folder
        index += 1


def _read_report(folder):
    """The `evaluation.json` in `folder`: a dict; None without one; {} for a
    file that is none of this command's."""
    try:
        with open(os.path.join(folder, "evaluation.json")) as f:
            report = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return report if isinstance(report, dict) else {}


def _reported_model(report):
    """The absolute path of the `--model` whose report this is (`report`,
    from `_read_report`); None without a report; a text that names no path
    for a file that is none of this command's."""
    if report is None:
        return None
    # A SavedModel is its version folder, however `--model` named it.
    model = report.get("saved_model_version", report.get("model"))
    return os.path.abspath(model) if isinstance(model, str) else "another program"


# The files a report writes into its folder.
PLOT_FILES = ("confusion_matrix.png", "mistakes.png", *(f"{stem}.png" for stem in CURVES))
REPORT_FILES = ("evaluation.json", *PLOT_FILES)


def _files_in_the_way(folder):
    """The report files of `folder` that are there as something other than a
    file (a folder), which the report could not write."""
    paths = (os.path.join(folder, name) for name in REPORT_FILES)
    return [p for p in paths if os.path.lexists(p) and not os.path.isfile(p)]


def _remove_stale_plots(folder, previous, plots):
    """Removes the plots that the report `folder` held before (`previous`,
    its old `evaluation.json`) and this one did not write again, so that no
    old curve or grid sits beside a new report. Only the report's own file
    names in `folder` itself are touched."""
    old = (previous or {}).get("plots")
    old = old.values() if isinstance(old, dict) else ()
    # By file name: the old report may have named its folder from another
    # working directory.
    listed = {os.path.basename(p) for p in old if isinstance(p, str)}
    written = {os.path.basename(p) for p in plots.values()}
    for name in (listed & set(PLOT_FILES)) - written:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            os.remove(path)


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return _report(args)
    except KeyboardInterrupt:  # else Ctrl-C ends in a traceback through TensorFlow
        # A report cut short is renewed by the same command (see `_report`).
        print("\nInterrupted before the report was finished; the same command writes it again.",
              file=sys.stderr)
        return 130


def _flags_problem(args):
    """Why the flags (`--data-dir`, `$CIFAR10_DIR` without it, `--run-dir`,
    `--output-dir`) cannot make a report, or None: checked before the model
    loads."""
    from keras_resnet.data import DATA_DIR_ENV
    from keras_resnet.data import python_folder

    if problem := (data_dir_problem(args.data_dir)  # else "" would fall back to $CIFAR10_DIR or tfds
                   # else "" would be taken for the flag left out
                   or empty_folder_problem(args.run_dir, "--run-dir", "the .keras file's run")
                   or empty_folder_problem(args.output_dir, "--output-dir", "the default report folder")):
        return problem
    if args.data_dir is None and (problem := data_dir_problem(python_folder())):
        # Else found only after the model loaded, without naming the variable.
        return blame_environment(problem, {"data_dir": DATA_DIR_ENV})
    if args.run_dir and os.path.isfile(args.run_dir):  # run/history.csv itself
        folder = os.path.dirname(args.run_dir) or os.curdir
        fix = (f"its folder, {folder}" if os.path.isfile(os.path.join(folder, "history.csv"))
               else "the folder that holds the run's history.csv")
        return f"--run-dir {args.run_dir} is a file, not a run folder: pass {fix}."
    if args.run_dir and not os.path.isfile(os.path.join(args.run_dir, "history.csv")):
        return f"--run-dir {args.run_dir} holds no history.csv of a training run."
    return None


def _output_dir_problem(output_dir, previous, evaluated, chosen):
    """Why the report cannot go to `output_dir`, or None.

    Args:
        output_dir: str. The report folder.
        previous: its report, from `_read_report`.
        evaluated: str. The model evaluated (a SavedModel's version folder).
        chosen: bool. Whether `--output-dir` named the folder (a default
            one never holds another model's report: `default_output_dir`).
    """
    if not can_create_folder(output_dir):
        return f"--output-dir {output_dir} cannot be created or written to as a folder."
    reported = _reported_model(previous)
    if chosen and reported not in (None, os.path.abspath(evaluated)):
        return (f"--output-dir {output_dir} holds the evaluation.json of {reported}; choose "
                "another folder (or leave --output-dir out), or delete that report first.")
    if in_the_way := _files_in_the_way(output_dir):
        return (f"{in_the_way[0]} is not a file (a folder, or a link to nowhere), where the "
                "report writes one: move it, or choose another --output-dir.")
    unreported = [name for name in PLOT_FILES if os.path.isfile(os.path.join(output_dir, name))]
    if previous is None and unreported:
        return (f"{output_dir} holds {', '.join(unreported)} but no evaluation.json: files that "
                "no report of this command wrote, which this one would replace; move them, or "
                "choose another --output-dir.")
    return None


def _report(args):
    """The command: checks, evaluates, writes the report; its exit status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from keras_resnet.data import DataError
    from keras_resnet.data import load_cifar10_test

    def fail(message):
        print(f"python -m keras_resnet.evaluate: error: {message}", file=sys.stderr)
        return 2

    if problem := _flags_problem(args):
        return fail(problem)
    try:
        model, kind = load_classifier(args.model)
    except ModelError as e:
        return fail(str(e))
    try:
        x_test, y_test, class_names = load_cifar10_test(args.data_dir)
    except DataError as e:
        return fail(str(e))

    run_dir = args.run_dir or find_run_dir(args.model)
    evaluated = model.path if kind == "saved_model" else args.model  # a SavedModel's version
    output_dir = args.output_dir or default_output_dir(evaluated, run_dir)
    previous = _read_report(output_dir)
    if problem := _output_dir_problem(output_dir, previous, evaluated, chosen=bool(args.output_dir)):
        return fail(problem)
    try:  # `can_create_folder` trusts `os.access`, which a root user or /sys can defeat
        os.makedirs(output_dir, exist_ok=True)
    except OSError as e:
        return fail(f"--output-dir {output_dir} cannot be created ({e.strerror}); choose another folder.")
    metrics, probabilities = evaluate(
        model, x_test, y_test, class_names, TTA_TRANSFORMS[args.tta_views],
        details="tta" if args.tta else "plain", batch_size=args.batch_size, verbose=1,
    )
    # Absolute: a later run from another folder must know its own report.
    result = {"model": os.path.abspath(args.model), "format": kind}
    if kind == "keras":
        result["params"] = int(model.count_params())
    else:  # a model folder's highest version, as evaluated
        result["saved_model_version"] = os.path.abspath(model.path)
    result.update(metrics)
    result.update(tta_views=args.tta_views, run_dir=run_dir, output_dir=output_dir)
    # Atomic: a report cut short would read as another program's. Written
    # before the plots too, naming those to come: a report stopped while
    # they are drawn (a Ctrl-C) leaves them to this command's next run, not
    # as files of the user's; the plots of the report before that none will
    # replace go now.
    report_path = os.path.join(output_dir, "evaluation.json")
    names = ["confusion_matrix", *(["mistakes"] if args.mistakes else []), *(CURVES if run_dir else ())]
    to_draw = {name: os.path.join(output_dir, f"{name}.png") for name in names}
    write_json_atomic(report_path, dict(result, plots=to_draw))
    _remove_stale_plots(output_dir, previous, to_draw)

    # The plots say which model and which predictions they show.
    shown = _display_name(args.model, model, kind) + (f" ({args.tta_views} TTA)" if args.tta else "")
    plots = {
        "confusion_matrix": plot_confusion_matrix(
            metrics["confusion_matrix"], class_names, to_draw["confusion_matrix"],
            title=f"Confusion matrix: {shown}",
        ),
    }
    if args.mistakes:
        plots["mistakes"] = plot_mistakes(
            x_test, y_test, probabilities,
            most_confident_mistakes(probabilities, y_test, args.mistakes),
            class_names, to_draw["mistakes"],
            title=f"Most confidently misclassified test images: {shown}",
        )
    if run_dir:
        try:
            plots.update(plot_training_curves(os.path.join(run_dir, "history.csv"), output_dir))
        except ValueError as e:
            print(f"warning: no training curves: {e}", file=sys.stderr)
    result["plots"] = plots
    write_json_atomic(report_path, result)
    _remove_stale_plots(output_dir, previous, plots)
    del result["confusion_matrix"]  # in evaluation.json and the PNG
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_command(main, "python -m keras_resnet.evaluate"))
