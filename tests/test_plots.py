"""The report's plots: the mistakes grid, the training curves and the
`history.csv` they are read from (PNGs of a real evaluation:
`test_evaluate.py::test_plots_are_valid_pngs`)."""

import numpy as np
import pytest

from tests.conftest import HISTORY
from tests.conftest import run_python
from keras_resnet import plots


def test_the_mistakes_grid_takes_labels_in_a_column(tmp_path, monkeypatch):
    # As keras.datasets.cifar10 gives them: a TypeError ("only integer
    # scalar arrays can be converted to a scalar index").
    from keras_resnet.data import CLASS_NAMES

    figures = []
    new_figure = plots._new_figure
    monkeypatch.setattr(plots, "_new_figure", lambda size: figures.append(new_figure(size)) or figures[-1])
    probabilities = np.eye(10, dtype="float32")[[5, 3]]  # dog, cat
    plots.plot_mistakes(np.zeros((2, 32, 32, 3), "uint8"), np.array([[3], [5]]), probabilities,
                     [0, 1], CLASS_NAMES, str(tmp_path / "m.png"))
    # Each image's classes under it (issue 4), the space above is the grid's title's.
    assert [axes.xaxis.get_label_position() for axes in figures[0].axes] == ["bottom"] * 2
    assert [axes.get_xlabel() for axes in figures[0].axes] == [
        "true: cat\npred: dog (100%)", "true: dog\npred: cat (100%)"]
    assert [axes.get_title() for axes in figures[0].axes] == ["", ""]
    # In the order given (the most confident mistake first), not the images'.
    figures.clear()
    plots.plot_mistakes(np.zeros((2, 32, 32, 3), "uint8"), np.array([[3], [5]]), probabilities,
                     [1, 0], CLASS_NAMES, str(tmp_path / "m.png"))
    assert [axes.get_xlabel() for axes in figures[0].axes] == [
        "true: dog\npred: cat (100%)", "true: cat\npred: dog (100%)"]


def test_the_confusion_matrix_is_drawn_with_the_true_classes_as_rows(tmp_path, monkeypatch):
    # matrix[true, predicted], as evaluate counts it: drawn transposed, or
    # with its axes named the other way round, each mistake would be shown
    # as one of the other class.
    figures = []
    new_figure = plots._new_figure
    monkeypatch.setattr(plots, "_new_figure", lambda size: figures.append(new_figure(size)) or figures[-1])
    matrix = np.array([[4, 1, 0], [0, 2, 0], [3, 0, 0]])  # every "c" taken for an "a"
    plots.plot_confusion_matrix(matrix, ("a", "b", "c"), str(tmp_path / "cm.png"), title="Confusion matrix: m")
    axes = figures[0].axes[0]  # then its colour bar
    np.testing.assert_array_equal(axes.images[0].get_array(), matrix)  # rows down, columns across
    assert {text.get_position(): text.get_text() for text in axes.texts} == {
        (column, row): str(matrix[row, column]) for row in range(3) for column in range(3)}
    assert (axes.get_ylabel(), axes.get_xlabel()) == ("True class", "Predicted class")
    assert [label.get_text() for label in axes.get_yticklabels()] == ["a", "b", "c"]
    assert axes.get_title() == "Confusion matrix: m\n10 test images, accuracy 60.00%"


def test_a_mistakes_grid_too_large_to_draw_is_refused(tmp_path, monkeypatch):
    # evaluate --mistakes stops at MAX_MISTAKES, the API did not: 100,000
    # indices were still drawing after a minute (1,500 took 8 minutes);
    # columns=0 was a ZeroDivisionError.
    from keras_resnet.data import CLASS_NAMES

    count = plots.MAX_MISTAKES + 1
    grid = (np.zeros((count, 32, 32, 3), "uint8"), np.zeros(count, "int64"),
            np.eye(10, dtype="float32")[np.ones(count, "int64")])
    path = str(tmp_path / "m.png")
    with pytest.raises(ValueError, match=rf"^`indices` must hold at most {plots.MAX_MISTAKES} "
                                         rf"images .*Received: {count} indices$"):
        plots.plot_mistakes(*grid, np.arange(count), CLASS_NAMES, path)
    with pytest.raises(ValueError, match="`columns` must be a positive integer. Received: columns=0"):
        plots.plot_mistakes(*grid, [0], CLASS_NAMES, path, columns=0)
    assert not list(tmp_path.iterdir())

    class Drawn(Exception):
        pass

    def drawn(size):  # the grid of MAX_MISTAKES is drawn (in about 25 s: not here)
        raise Drawn

    monkeypatch.setattr(plots, "_new_figure", drawn)
    with pytest.raises(Drawn):
        plots.plot_mistakes(*grid, np.arange(plots.MAX_MISTAKES), CLASS_NAMES, path)


def test_plot_arguments_that_were_drawn_elsewhere_or_failed_deep_inside_are_named(tmp_path):
    # Before: a folder as `path` was drawn into `out.png` beside it (and
    # `path` returned as if written), a name without an ending into
    # `name.png`; a boolean mask as `indices` failed in matplotlib ("Invalid
    # shape (1, 20, 32, 32, 3)"), an index past the images with an
    # IndexError; images scaled to [0, 1] were drawn black; the run folder
    # given for its history was "not a run folder holding history.csv".
    import re

    from keras_resnet.data import CLASS_NAMES

    out = tmp_path / "out"
    out.mkdir()
    labels = np.arange(20) % 10
    images = np.random.default_rng(0).integers(0, 256, (20, 32, 32, 3)).astype("uint8")
    probabilities = np.eye(10, dtype="float32")[(labels + 1) % 10]
    grid = (images, labels, probabilities)
    for call, message in (
        (lambda: plots.plot_confusion_matrix(np.eye(10), CLASS_NAMES, str(out)),
         f"`path` must be the image file to write, not a folder: pass os.path.join(path, "
         f"'confusion_matrix.png'). Received: path={str(out)!r}"),
        (lambda: plots.plot_mistakes(*grid, [0], CLASS_NAMES, str(out)), "os.path.join(path, 'mistakes.png')"),
        (lambda: plots.plot_confusion_matrix(np.eye(10), CLASS_NAMES, str(out / "cm")),
         "`path` must be the image file to write, ending in its format, e.g. 'confusion_matrix.png'"),
        (lambda: plots.plot_confusion_matrix(np.eye(10), CLASS_NAMES[:5], str(out / "cm.png")),
         "`class_names` must name each of the matrix's 10 classes. Received: 5 names"),
        (lambda: plots.plot_confusion_matrix(np.arange(10), CLASS_NAMES, str(out / "cm.png")),
         "`matrix` must be a square confusion matrix, (classes, classes) counts. Received: shape (10,)"),
        (lambda: plots.plot_mistakes(*grid, labels != 3, CLASS_NAMES, str(out / "m.png")),
         "not a boolean mask: pass np.flatnonzero(mask). Received: a boolean array of shape (20,)"),
        (lambda: plots.plot_mistakes(*grid, [25], CLASS_NAMES, str(out / "m.png")),
         "`indices` must be positions of the 20 images, in [0, 20). Received: values from 25 to 25"),
        (lambda: plots.plot_mistakes(images[:3], labels, probabilities, [4], CLASS_NAMES, str(out / "m.png")),
         "`images` must hold one image per label, 20. Received: shape (3, 32, 32, 3)"),
        (lambda: plots.plot_mistakes(images / 255, labels, probabilities, [0], CLASS_NAMES, str(out / "m.png")),
         "not pixels scaled to [0, 1]: pass images * 255"),
        (lambda: plots.plot_training_curves(str(tmp_path), str(out)),
         f"{tmp_path} is a run folder: pass its history, {tmp_path / 'history.csv'}."),
        (lambda: plots.plot_training_curves(None, str(out)), "Received: history_path=None"),
    ):
        (tmp_path / "history.csv").write_text(HISTORY)
        with pytest.raises(ValueError, match=re.escape(message)):
            call()
    assert not list(out.iterdir()) and sorted(p.name for p in tmp_path.iterdir()) == ["history.csv", "out"]
    assert plots.plot_mistakes(*grid, [], CLASS_NAMES, str(out / "none.png")) == str(out / "none.png")


def test_read_history_leaves_out_empty_columns(tmp_path):
    history = tmp_path / "history.csv"
    history.write_text(HISTORY)
    columns = plots.read_history(str(history))
    assert "val_loss" not in columns and "val_accuracy" not in columns
    np.testing.assert_allclose(columns["loss"], [2.48, 2.38, 2.30])


def test_read_history_reads_the_header_columns_of_a_row_with_more_fields(tmp_path):
    history = tmp_path / "history.csv"
    history.write_text("epoch,accuracy,loss\n0,0.1,2.3,99\n1,0.2,2.0\n")  # was a TypeError
    columns = plots.read_history(str(history))
    assert sorted(columns) == ["accuracy", "epoch", "loss"]
    np.testing.assert_allclose(columns["loss"], [2.3, 2.0])


def test_a_column_logged_in_some_epochs_is_plotted_against_1_based_epochs(tmp_path, monkeypatch):
    # Validation every other epoch (`validation_freq=2`) leaves "NA" in the
    # epochs without it: the curve is drawn at the epochs that have it, and
    # the epochs count from 1, as train.py prints them (CSVLogger's from 0).
    history = tmp_path / "history.csv"
    history.write_text("epoch,loss,val_loss\n0,2.5,NA\n1,2.3,2.2\n2,2.1,NA\n")
    np.testing.assert_allclose(plots.read_history(str(history))["val_loss"], [np.nan, 2.2, np.nan])
    figures = []
    new_figure = plots._new_figure
    monkeypatch.setattr(plots, "_new_figure", lambda size: figures.append(new_figure(size)) or figures[-1])
    assert sorted(plots.plot_training_curves(str(history), str(tmp_path / "curves"))) == ["loss"]
    (axes,) = figures[0].axes
    assert [line.get_label() for line in axes.lines] == ["training", "validation"]
    for line in axes.lines:
        np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3])


def test_the_epoch_axis_is_ticked_at_whole_epochs_for_any_length(tmp_path, monkeypatch):
    # MaxNLocator(integer=True) keeps to whole numbers only where it finds
    # two in view: a one-epoch run's axis (0.945 to 1.055) was ticked 0.945,
    # 0.960, ... 1.050.
    figures = []
    new_figure = plots._new_figure
    monkeypatch.setattr(plots, "_new_figure", lambda size: figures.append(new_figure(size)) or figures[-1])
    history = tmp_path / "history.csv"

    def tick_labels(epochs):
        history.write_text("epoch,loss\n" + "".join(f"{i},{2.5 - i / 100}\n" for i in range(epochs)))
        figures.clear()
        assert sorted(plots.plot_training_curves(str(history), str(tmp_path / "curves"))) == ["loss"]
        (axes,) = figures[0].axes  # drawn: savefig set the labels' text
        low, high = axes.get_xlim()
        return [label.get_text() for label in axes.get_xticklabels() if low <= label.get_position()[0] <= high]

    assert tick_labels(1) == ["1"]
    assert tick_labels(2) == ["1", "2"]
    labels = tick_labels(200)
    assert len(labels) > 2 and all(label.isdigit() for label in labels) and "200" in labels, labels


def test_the_loss_curve_names_the_label_smoothing_the_run_trained_with(tmp_path, monkeypatch):
    # Keras logs the loss it trains on, the cross-entropy of smoothed labels:
    # a fast-cpu run (smoothing 0.2) at 100% training accuracy stayed at a
    # loss of 0.89 under "loss (cross-entropy)", and its last val_loss,
    # 2.08, was 1.82 in metrics.json (plain cross-entropy, as test_loss).
    figures = []
    new_figure = plots._new_figure
    monkeypatch.setattr(plots, "_new_figure", lambda size: figures.append(new_figure(size)) or figures[-1])
    (tmp_path / "history.csv").write_text(HISTORY)

    def loss_label(config):
        if config is not None:
            (tmp_path / "config.json").write_text(config)
        figures.clear()
        plots.plot_training_curves(str(tmp_path / "history.csv"), str(tmp_path / "curves"))
        (axes,) = [figure.axes[0] for figure in figures if figure.axes[0].get_title() == "Loss per epoch"]
        return axes.get_ylabel()

    assert loss_label(None) == "loss (cross-entropy)"  # no config.json: not train.py's run
    assert loss_label('{"preset": "fast-cpu", "label_smoothing": 0.2}') == (
        "loss (cross-entropy, label smoothing 0.2)")
    assert loss_label('{"preset": "seed", "label_smoothing": 0.0}') == "loss (cross-entropy)"
    assert loss_label("not JSON") == "loss (cross-entropy)"
    assert loss_label('["label_smoothing"]') == "loss (cross-entropy)"


def test_a_diverged_history_gives_a_warning_not_an_empty_curve(tmp_path, capsys):
    history = tmp_path / "history.csv"
    history.write_text("epoch,accuracy,learning_rate,loss\n0,0.1,0.05,nan\n1,0.1,0.1,nan\n")
    columns = plots.read_history(str(history))
    assert np.isnan(columns["loss"]).all()  # kept: it was logged, as NaN
    paths = plots.plot_training_curves(str(history), str(tmp_path / "curves"))
    assert sorted(paths) == ["accuracy", "learning_rate"]
    err = capsys.readouterr().err
    assert "warning: no loss curve: the loss of" in err and "did the run diverge?" in err
    assert not (tmp_path / "curves" / "loss.png").exists()


def test_a_learning_rate_logged_as_lr_is_plotted_and_a_curve_without_columns_is_named(
        tmp_path, capsys, monkeypatch):
    # tf.keras (Keras 2) logs the rate as "lr", Keras 3 as "learning_rate":
    # a history of "lr" got no learning-rate curve, and a curve without its
    # columns was left out without a word.
    figures = []
    new_figure = plots._new_figure
    monkeypatch.setattr(plots, "_new_figure", lambda size: figures.append(new_figure(size)) or figures[-1])
    history = tmp_path / "history.csv"
    history.write_text("epoch,accuracy,loss,lr\n0,0.30,1.9,0.1\n1,0.45,1.5,0.01\n")
    assert sorted(plots.plot_training_curves(str(history), str(tmp_path / "a"))) == [
        "accuracy", "learning_rate", "loss"]
    (line,) = figures[-1].axes[0].lines
    np.testing.assert_allclose(line.get_ydata(), [0.1, 0.01])
    assert figures[-1].axes[0].get_yscale() == "log"  # a schedule spans decades
    assert capsys.readouterr().err == ""

    history.write_text("epoch,accuracy,loss\n0,0.30,1.9\n1,0.45,1.5\n")
    assert sorted(plots.plot_training_curves(str(history), str(tmp_path / "b"))) == ["accuracy", "loss"]
    assert capsys.readouterr().err == (
        f"warning: no learning_rate curve: {history} has no learning_rate or lr column\n")
    # A column of text is named once, as a column of text.
    history.write_text("epoch,accuracy,loss,lr\n0,0.30,x,0.1\n1,0.45,1.5,0.01\n")
    assert sorted(plots.plot_training_curves(str(history), str(tmp_path / "c"))) == [
        "accuracy", "learning_rate"]
    assert capsys.readouterr().err == (
        f"warning: no loss curve: the loss of {history} holds 'x', not a number\n")


def test_a_history_that_is_not_train_pys_is_named(tmp_path):
    # A binary file warned "'utf-8' codec can't decode ..." without its
    # name; one with NUL bytes or other columns drew nothing, silently.
    cases = {"binary.csv": (b"\xfc\x00\xff" * 50, "is not a history.csv of train.py"),
             "nul.csv": (b"ep\x00och,lo\x00ss\n0\x00,1\n", "holds none of the columns"),
             "other.csv": (b"a,b\n1,2\n", "holds none of the columns"),
             # Another delimiter was said to hold "no epochs yet".
             "semicolons.csv": (b"epoch;loss;accuracy\n0;2.3;0.1\n",
                                r"holds none of the columns of train.py's history \(comma-separated"),
             "header.csv": (b"epoch,loss,accuracy\r\n", "holds no epochs yet"),
             "empty.csv": (b"", "holds no epochs yet")}
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=f"^{tmp_path / name} {message}"):
            plots.plot_training_curves(str(tmp_path / name), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_matplotlib_loads_with_the_first_plot_not_with_evaluate():
    # evaluate checks its flags before Keras and matplotlib load: neither
    # may come with the import of the command's modules.
    out = run_python(["-c", "import sys, keras_resnet.evaluate; "
                            "print([m for m in ('keras', 'matplotlib') if m in sys.modules])"])
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr[-2000:]
