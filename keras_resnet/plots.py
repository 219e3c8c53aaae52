"""The evaluation report's plots: the confusion matrix, the grid of the
most confidently misclassified test images, and the training curves of a
run's `history.csv` (loss, accuracy, learning rate).

They are drawn on matplotlib's Agg canvas: no display, no global pyplot
state. matplotlib is imported by the first plot, not with this module, so
that `python -m keras_resnet.evaluate` checks its flags before it loads.
"""

import csv
import json
import os
import sys

import numpy as np

from keras_resnet.checks import check_class_names
from keras_resnet.checks import check_confusion_matrix
from keras_resnet.checks import check_int
from keras_resnet.checks import check_path
from keras_resnet.checks import check_pixels
from keras_resnet.checks import check_probabilities
from keras_resnet.checks import is_number
from keras_resnet.data import class_labels


def _new_figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _check_image_path(path, example):
    """The image file a plot goes to. matplotlib adds `.png` to a name
    without an ending: a folder `out` became `out.png` beside it."""
    check_path("path", path)
    if os.path.isdir(path):
        raise ValueError(f"`path` must be the image file to write, not a folder: pass "
                         f"os.path.join(path, {example!r}). Received: path={path!r}")
    if not os.path.splitext(os.fspath(path))[1]:
        raise ValueError(f"`path` must be the image file to write, ending in its format, "
                         f"e.g. {example!r}. Received: path={path!r}")


def _save(figure, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path)
    return path


def plot_confusion_matrix(matrix, class_names, path, title="Confusion matrix"):
    """Writes the confusion matrix (counts, rows = true class) as a PNG.

    Args:
        matrix: (classes, classes) counts, `matrix[true, predicted]`.
        class_names: the name of each class, for the axes.
        path: str. The PNG to write (its folder is created).
        title: str. The first line of the title; the second gives the
            image count and the accuracy.

    Returns:
        `path`.
    """
    _check_image_path(path, "confusion_matrix.png")
    matrix = check_confusion_matrix("matrix", matrix)
    check_class_names("class_names", class_names)
    if len(class_names) != len(matrix):
        raise ValueError(f"`class_names` must name each of the matrix's {len(matrix)} classes. "
                         f"Received: {len(class_names)} names")
    figure = _new_figure((8.5, 7.5))
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes, label="test images", shrink=0.8)
    ticks = np.arange(len(class_names))
    axes.set_xticks(ticks, class_names, rotation=45, ha="right")
    axes.set_yticks(ticks, class_names)
    axes.set_xlabel("Predicted class")
    axes.set_ylabel("True class")
    total = matrix.sum()
    correct = np.trace(matrix)
    axes.set_title(
        f"{title}\n{total} test images, accuracy {correct / max(total, 1):.2%}"
    )
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, col), count in np.ndenumerate(matrix):
        axes.text(
            col, row, str(count), ha="center", va="center", fontsize=8,
            color="white" if count > threshold else "black",
        )
    return _save(figure, path)


# The most images a mistakes grid holds: 500 take about 25 s to draw on 2
# CPU cores, in a PNG 11,560 pixels high. The time grows faster than the
# count: 1,500 took 8 minutes, and all 7,754 mistakes of a weak model were
# still drawing after 25.
MAX_MISTAKES = 500


def plot_mistakes(images, labels, probabilities, indices, class_names, path,
                  columns=5, title="Most confidently misclassified test images"):
    """Writes a grid of test images, each with its true and predicted
    classes under it, as a PNG.

    Args:
        images: (N, height, width, 3) images in 0-255.
        labels: their int labels, shaped (N,) or (N, 1).
        probabilities: (N, classes) predicted probabilities.
        indices: the images to show, in order: at most `MAX_MISTAKES`, as
            `evaluate --mistakes` allows.
        class_names: the name of each class.
        path: str. The PNG to write (its folder is created).
        columns: int. Images per row.
        title: str. The grid's title.

    Returns:
        `path`.

    Raises:
        ValueError: more than `MAX_MISTAKES` indices, indices that are not
            positions of the images (a boolean mask), `columns` not a
            positive int, labels that are not one class index per image, or
            shown images that are not raw pixels in 0-255 (`check_pixels`).
    """
    _check_image_path(path, "mistakes.png")
    indices = np.asarray(indices)
    if indices.dtype == bool:
        raise ValueError("`indices` must be the positions of the images to show, not a boolean mask: "
                         f"pass np.flatnonzero(mask). Received: a boolean array of shape {indices.shape}")
    if indices.ndim != 1 or (indices.size and not np.issubdtype(indices.dtype, np.integer)):
        raise ValueError("`indices` must be a list of the positions of the images to show. "
                         f"Received: shape {indices.shape}, dtype {indices.dtype}")
    indices = indices.astype(np.intp)  # [] is float64
    if len(indices) > MAX_MISTAKES:
        raise ValueError(f"`indices` must hold at most {MAX_MISTAKES} images (a larger grid takes "
                         f"many minutes to draw): pass `indices[:{MAX_MISTAKES}]`. "
                         f"Received: {len(indices)} indices")
    check_int("columns", columns)
    check_class_names("class_names", class_names)
    probabilities = check_probabilities("probabilities", probabilities)
    labels = class_labels(labels, len(probabilities), len(class_names))
    images = np.asarray(images)
    if images.ndim < 3 or len(images) != len(labels):
        raise ValueError(f"`images` must hold one image per label, {len(labels)}. "
                         f"Received: shape {images.shape}")
    if indices.size and not 0 <= indices.min() <= indices.max() < len(labels):
        raise ValueError(f"`indices` must be positions of the {len(labels)} images, in "
                         f"[0, {len(labels)}). Received: values from {indices.min()} to {indices.max()}")
    check_pixels("images", images[indices].astype("float32"))  # else drawn black, or wrapped
    rows = max(1, -(-len(indices) // columns))
    figure = _new_figure((2.0 * columns, 2.3 * rows + 0.6))
    figure.suptitle(title, fontsize=13)
    if not len(indices):
        axes = figure.add_subplot()
        axes.axis("off")
        axes.text(0.5, 0.5, "No misclassified images.", ha="center", va="center")
    for position, index in enumerate(indices):
        axes = figure.add_subplot(rows, columns, position + 1)
        axes.imshow(np.asarray(images[index], dtype="uint8"), interpolation="nearest")
        axes.set_xticks([])
        axes.set_yticks([])
        predicted = int(np.argmax(probabilities[index]))
        axes.set_xlabel(  # under the image
            f"true: {class_names[labels[index]]}\n"
            f"pred: {class_names[predicted]} "
            f"({probabilities[index][predicted]:.0%})",
            fontsize=9,
        )
    return _save(figure, path)


# Training-curve plots: file stem -> (title, y label, columns, log scale).
CURVES = {
    "loss": ("Loss", "loss (cross-entropy)", ("loss", "val_loss"), False),
    "accuracy": ("Accuracy", "accuracy", ("accuracy", "val_accuracy"), False),
    "learning_rate": ("Learning rate", "learning rate", ("learning_rate",), True),
}
# Columns that older Keras named otherwise, read under today's name:
# tf.keras (Keras 2) logged the learning rate as "lr".
OLD_NAMES = {"lr": "learning_rate"}
CURVE_COLUMNS = {column for _, _, columns, _ in CURVES.values() for column in columns} | set(OLD_NAMES)


def read_history(path):
    """Columns of a run's `history.csv` as float arrays, by name; empty
    columns (like `val_loss` of a run without validation) are left out. A
    column of NaNs (a run that diverged) is kept; one holding text is left
    out, with a warning on stderr if a curve plots it.

    Returns:
        A dict from column name (today's: `OLD_NAMES`) to a float array.
    """
    return _read_history(path)[0]


def _read_history(path):
    """`read_history`'s columns, with the names of the header (today's) and
    the count of the file's non-empty lines, the header's included: the
    file is read once."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        fieldnames = reader.fieldnames or []  # read from the file: None for an empty one
    header = {OLD_NAMES.get(name, name) for name in fieldnames}
    columns = {}
    # The header's names: a row with more fields files the rest under None.
    for name in fieldnames if rows else ():
        # CSVLogger writes "NA" for a metric missing in some epoch.
        texts = [None if row[name] in ("", "NA") else row[name] for row in rows]
        if all(text is None for text in texts):
            continue
        values = [np.nan if t is None else _float(t) for t in texts]
        if None not in values:
            columns[name] = np.array(values)
        elif name in CURVE_COLUMNS:  # else a curve left out without a word
            print(f"warning: no {OLD_NAMES.get(name, name)} curve: the {name} of {path} holds "
                  f"{texts[values.index(None)]!r}, not a number", file=sys.stderr)
    for old, name in OLD_NAMES.items():
        if old in columns and name not in columns:
            columns[name] = columns.pop(old)
    return columns, header, bool(fieldnames) + len(rows)  # DictReader skips empty lines


def _float(text):
    try:
        return float(text)
    except ValueError:
        return None


def _label_smoothing(run_dir):
    """The label smoothing of the loss a run logged, from the `config.json`
    that train.py writes beside `history.csv`; `None` for none or unknown."""
    try:
        with open(os.path.join(run_dir, "config.json")) as f:
            config = json.load(f)
    except (OSError, ValueError):  # another run's folder, or no run's
        return None
    smoothing = config.get("label_smoothing") if isinstance(config, dict) else None
    return smoothing if is_number(smoothing) and smoothing > 0 else None


def plot_training_curves(history_path, output_dir):
    """Writes `loss.png`, `accuracy.png` and `learning_rate.png` from a run's
    `history.csv` (with the validation curves when logged; the loss's label
    names the label smoothing of the run's `config.json`).

    Returns:
        A dict from plot name to path, for the columns the history holds.

    Raises:
        ValueError: the file is missing, holds no epochs or none of the
            columns of train.py's history.
    """
    check_path("history_path", history_path)
    check_path("output_dir", output_dir)
    if os.path.isfile(in_folder := os.path.join(history_path, "history.csv")):
        raise ValueError(f"{history_path} is a run folder: pass its history, {in_folder}.")
    if not os.path.isfile(history_path):
        raise ValueError(
            f"No training history at {history_path}: --run-dir must be a run "
            "folder holding history.csv (written by train.py)."
        )
    from matplotlib.ticker import MaxNLocator

    try:
        history, header, lines = _read_history(history_path)
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{history_path} is not a history.csv of train.py ({e}).") from None
    if not CURVE_COLUMNS & set(history):
        if lines < 2:  # a header at most
            raise ValueError(f"{history_path} holds no epochs yet.")
        # Another delimiter (epoch;loss;...) read as one column of text.
        raise ValueError(f"{history_path} holds none of the columns of train.py's history "
                         "(comma-separated: loss, accuracy, learning_rate).")
    epochs = history.get("epoch", np.arange(len(next(iter(history.values())))))
    epochs = epochs + 1  # CSVLogger counts from 0
    smoothing = _label_smoothing(os.path.dirname(history_path))
    paths = {}
    for stem, (title, ylabel, columns, log_scale) in CURVES.items():
        if stem == "loss" and smoothing:  # Keras logs the loss of the smoothed labels
            ylabel = f"loss (cross-entropy, label smoothing {smoothing:g})"
        present = [c for c in columns if c in history]
        if present and not any(np.isfinite(history[c]).any() for c in present):
            print(f"warning: no {stem} curve: the {', '.join(present)} of {history_path} "
                  "hold no finite number (did the run diverge?)", file=sys.stderr)
            continue
        if not present:
            if not header & set(columns):  # else read_history named a column of text
                names = [*columns, *(old for old, name in OLD_NAMES.items() if name in columns)]
                print(f"warning: no {stem} curve: {history_path} has no {' or '.join(names)} column",
                      file=sys.stderr)
            continue
        figure = _new_figure((7, 4.5))
        axes = figure.add_subplot()
        for column in present:
            label = "validation" if column.startswith("val_") else "training"
            axes.plot(epochs, history[column], marker="." if len(epochs) < 30 else None,
                      label=label)
        if log_scale and np.all(history[present[0]] > 0):
            axes.set_yscale("log")
        # min_n_ticks=1: with fewer whole numbers in view than min_n_ticks
        # (2 by default: a one-epoch run's 0.945 to 1.055) the locator
        # gives up integer=True for fractional ticks.
        axes.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        axes.set_title(f"{title} per epoch")
        axes.set_xlabel("epoch")
        axes.set_ylabel(ylabel)
        axes.grid(alpha=0.3)
        if len(present) > 1 or stem != "learning_rate":
            axes.legend()
        paths[stem] = _save(figure, os.path.join(output_dir, f"{stem}.png"))
    return paths
