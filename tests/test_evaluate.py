"""Evaluation: TTA, per-class accuracy, the report's PNGs, and the command line
(the plots themselves: `test_plots.py`)."""

import json
import os
import re
import shutil
import zipfile

import numpy as np
import pytest
from PIL import Image

from tests.conftest import HISTORY
from tests.conftest import call_main
from tests.conftest import run_python
from tests.conftest import write_fake_cifar
from keras_resnet import evaluate as ev
from keras_resnet import plots


@pytest.fixture(scope="module")
def tiny_model(real_cifar):
    """A tiny network, trained one epoch on 512 real images (a few seconds)."""
    import keras

    from keras_resnet.model import build_model
    from keras_resnet.config import TrainConfig
    from keras_resnet.training import compile_model

    keras.utils.set_random_seed(0)
    model = build_model("seed", stage_filters=(8, 16, 16, 16))
    compile_model(model, TrainConfig(batch_size=64, epochs=1), steps_per_epoch=8)
    x, y = real_cifar.x_train[:512].astype("float32"), real_cifar.y_train[:512]
    model.fit(x, np.eye(10, dtype="float32")[y], batch_size=64, epochs=1, verbose=0)
    return model


@pytest.fixture(scope="module")
def balanced_test(real_cifar):
    """20 test images of each class, 200 in all."""
    picks = np.concatenate(
        [np.flatnonzero(real_cifar.y_test == c)[:20] for c in range(10)]
    )
    return real_cifar.x_test[picks], real_cifar.y_test[picks]


def _check_png(path, min_size=(300, 250)):
    assert os.path.isfile(path), path
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        image.verify()
    assert width >= min_size[0] and height >= min_size[1], (path, image.size)


def test_tta_without_transforms_is_the_plain_prediction(tiny_model, balanced_test):
    x, y = balanced_test
    plain = tiny_model.predict(x.astype("float32"), verbose=0)
    np.testing.assert_allclose(ev.predict_tta(tiny_model, x, transforms=()), plain, atol=1e-6)
    metrics, _ = ev.evaluate(tiny_model, x, y, transforms=())
    assert metrics["test_accuracy_tta"] == metrics["test_accuracy"]


def test_shift_moves_the_image_and_reflects_the_edge():
    images = np.arange(2 * 5 * 6 * 3).reshape(2, 5, 6, 3)
    down_right = ev.shift(1, 1)(images)
    np.testing.assert_array_equal(down_right[:, 1:, 1:], images[:, :-1, :-1])
    np.testing.assert_array_equal(down_right[:, 0, 1:], images[:, 1, :-1])  # reflected row
    up_left = ev.shift(-1, -1)(images)
    np.testing.assert_array_equal(up_left[:, :-1, :-1], images[:, 1:, 1:])
    assert up_left.shape == images.shape


def test_flip_shift_tta_is_the_mean_of_six_views(tiny_model, balanced_test):
    from keras_resnet.config import TTA_VIEWS

    assert sorted(TTA_VIEWS) == sorted(ev.TTA_TRANSFORMS)
    x, y = balanced_test
    x = x.astype("float32")
    views = [x, x[:, :, ::-1]]
    for moved in (ev.shift(-1, -1), ev.shift(1, 1)):
        views += [moved(x), moved(x[:, :, ::-1])]
    expected = np.mean([tiny_model.predict(v, verbose=0) for v in views], axis=0)
    tta = ev.predict_tta(tiny_model, x, ev.TTA_TRANSFORMS["flip-shift"])
    np.testing.assert_allclose(tta, expected, atol=1e-6)
    metrics, _ = ev.evaluate(tiny_model, x, y, transforms=ev.TTA_TRANSFORMS["flip-shift"])
    assert metrics["test_accuracy_tta"] == pytest.approx(np.mean(expected.argmax(-1) == y))


def test_flip_tta_is_the_mean_of_both_views(tiny_model, balanced_test):
    x, y = balanced_test
    plain = ev.predict_tta(tiny_model, x, transforms=())
    flipped = ev.predict_tta(tiny_model, x[:, :, ::-1], transforms=())
    tta = ev.predict_tta(tiny_model, x)
    np.testing.assert_allclose(tta, (plain + flipped) / 2, atol=1e-6)
    np.testing.assert_allclose(tta.sum(axis=-1), 1.0, atol=1e-5)
    metrics, _ = ev.evaluate(tiny_model, x, y)
    assert metrics["test_accuracy"] == pytest.approx(np.mean(plain.argmax(-1) == y))
    assert metrics["test_accuracy_tta"] == pytest.approx(np.mean(tta.argmax(-1) == y))


@pytest.mark.parametrize("details", ["plain", "tta"])
def test_per_class_accuracy_averages_to_overall(tiny_model, balanced_test, details):
    x, y = balanced_test
    metrics, probabilities = ev.evaluate(tiny_model, x, y, details=details)
    overall = metrics["test_accuracy_tta" if details == "tta" else "test_accuracy"]
    per_class = list(metrics["per_class_accuracy"].values())
    assert len(per_class) == 10
    assert np.mean(per_class) == pytest.approx(overall)
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.sum() == len(y) and (matrix.sum(axis=1) == 20).all()
    assert np.trace(matrix) / len(y) == pytest.approx(overall)
    assert ev.accuracy(probabilities, y) == pytest.approx(overall)


def test_most_confident_mistakes_order():
    probabilities = np.array(
        [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]], dtype="float32"
    )
    labels = np.array([0, 0, 1, 0])  # image 0 is right; 1, 2, 3 are wrong
    assert ev.most_confident_mistakes(probabilities, labels).tolist() == [1, 3, 2]
    assert ev.most_confident_mistakes(probabilities, labels, count=1).tolist() == [1]
    assert ev.most_confident_mistakes(probabilities, np.array([0, 1, 0, 1])).size == 0


class _ConfidentOracle:
    """Predicts 0.9 for each image's true class: a classifier without Keras."""

    def __init__(self, labels):
        self.labels = labels

    def predict(self, images, batch_size=256, verbose=0):
        probabilities = np.full((len(images), 10), 0.1 / 9, dtype="float32")
        probabilities[np.arange(len(images)), self.labels[: len(images)]] = 0.9
        return probabilities


def test_labels_in_a_column_as_keras_datasets_gives_them_give_the_same_report():
    labels = np.arange(100) % 10
    images = np.zeros((100, 32, 32, 3), dtype="uint8")
    flat, _ = ev.evaluate(_ConfidentOracle(labels), images, labels, transforms=())
    column, _ = ev.evaluate(_ConfidentOracle(labels), images, labels[:, None], transforms=())
    assert flat["test_accuracy"] == 1.0 and flat["test_loss"] == pytest.approx(-np.log(0.9))
    assert column == flat
    probabilities = _ConfidentOracle(labels).predict(images)
    assert ev.most_confident_mistakes(probabilities, labels[:, None]).size == 0


def test_a_true_class_of_probability_0_keeps_the_loss_a_number():
    # A float32 softmax rounds the true class of a confident mistake to 0:
    # its log would make the loss inf, which evaluation.json and the JSON
    # line cannot hold (JSON has no Infinity).
    labels = np.arange(100) % 10

    class CertainlyWrong:
        def predict(self, images, batch_size=256, verbose=0):
            return np.eye(10, dtype="float32")[(labels[: len(images)] + 1) % 10]

    metrics, _ = ev.evaluate(CertainlyWrong(), np.zeros((100, 32, 32, 3), "uint8"), labels, transforms=())
    assert metrics["test_accuracy"] == 0.0
    assert metrics["test_loss"] == pytest.approx(-np.log(1e-12))
    json.dumps(metrics, allow_nan=False)


def test_images_scaled_to_0_1_or_minus_1_1_are_refused_naming_the_fix():
    # Evaluated before without a word: `x / 255` read as nearly black pixels,
    # a confident wrong class for each; the whitening stem fitted to them.
    from keras_resnet.model import adapt_whitening
    from keras_resnet.model import build_model

    labels = np.arange(100) % 10
    raw = np.random.default_rng(0).integers(0, 256, (100, 32, 32, 3)).astype("uint8")
    oracle = _ConfidentOracle(labels)
    for call in (lambda images: ev.evaluate(oracle, images, labels, transforms=()),
                 lambda images: ev.predict_tta(oracle, images),
                 lambda images: adapt_whitening(build_model("fast-cpu"), images[:4])):
        with pytest.raises(ValueError, match=re.escape(
                "not pixels scaled to [0, 1]: pass images * 255. Received: values from 0 to 1")):
            call(raw / 255)
        with pytest.raises(ValueError, match=re.escape(
                "not pixels scaled to [-1, 1]: pass (images + 1) * 127.5. Received: values from -1 to 1")):
            call(raw / 127.5 - 1)
    # Raw pixels that happen to lie in [0, 1] are whole numbers: black images.
    assert ev.evaluate(oracle, np.zeros((100, 32, 32, 3), "float32"), labels,
                       transforms=())[0]["test_accuracy"] == 1.0



def test_bfloat16_images_are_taken_as_their_float32_values():
    # JAX's and TensorFlow's bfloat16 (ml_dtypes', of NumPy kind "V") was
    # refused as "not an array" by the dtype check that turns away datasets
    # and strings; whole pixels are exact in it.
    import ml_dtypes

    from keras_resnet import data

    labels = np.arange(100) % 10
    raw = np.random.default_rng(0).integers(0, 256, (100, 32, 32, 3)).astype("uint8")
    half = raw.astype(ml_dtypes.bfloat16)
    assert ev.evaluate(_ConfidentOracle(labels), half, labels, transforms=())[0]["test_accuracy"] == 1.0
    np.testing.assert_array_equal(next(iter(data.eval_dataset(half, labels, 100)))[0], raw)
    assert next(iter(data.device_batches(half, labels, 50)))[0].shape == (50, 32, 32, 3)
    with pytest.raises(ValueError, match=re.escape("not pixels scaled to [0, 1]")):  # checked as floats
        ev.predict_tta(_ConfidentOracle(labels), (raw / 255).astype(ml_dtypes.bfloat16))

class _MirrorSensitive:
    """A classifier without Keras that tells an image from its mirror image:
    pixel (0, 0) is the image's index, its mirror's is 100 + the index. Of
    the 10 images of class c, the first c are right at 0.6, the rest wrong
    (class c + 1) at 0.6; mirrored, every image is right at 0.9."""

    def __init__(self, labels):
        self.labels = labels
        rank = np.array([np.sum(labels[:i] == labels[i]) for i in range(len(labels))])
        predicted = np.where(rank < labels, labels, (labels + 1) % 10)
        self.plain = np.full((len(labels), 10), 0.4 / 9, dtype="float32")
        self.plain[np.arange(len(labels)), predicted] = 0.6
        self.mirrored = np.full((len(labels), 10), 0.1 / 9, dtype="float32")
        self.mirrored[np.arange(len(labels)), labels] = 0.9

    def images(self):
        images = np.zeros((len(self.labels), 32, 32, 3), dtype="uint8")
        images[:, 0, 0] = np.arange(len(self.labels))[:, None]
        images[:, 0, -1] = 100 + np.arange(len(self.labels))[:, None]
        return images

    def predict(self, images, batch_size=256, verbose=0):
        keys = np.asarray(images)[:, 0, 0, 0].astype(int)
        return np.where((keys < 100)[:, None], self.plain[keys % 100], self.mirrored[keys % 100])


def test_per_class_accuracy_names_each_class_and_the_loss_is_the_plain_predictions():
    # Class c is right on c of its 10 images: a per-class accuracy filed
    # under another class's name, or a loss of the TTA probabilities, shows.
    from keras_resnet.data import CLASS_NAMES

    labels = np.repeat(np.arange(10), 10)
    model = _MirrorSensitive(labels)
    images = model.images()
    true_plain = model.plain[np.arange(100), labels]
    for details in ("plain", "tta"):
        metrics, chosen = ev.evaluate(model, images, labels, details=details)
        assert metrics["test_accuracy"] == pytest.approx(0.45)
        assert metrics["test_accuracy_tta"] == 1.0
        assert metrics["test_loss"] == pytest.approx(-np.mean(np.log(true_plain)), rel=1e-6)
        per_class = metrics["per_class_accuracy"]
        assert list(per_class) == list(CLASS_NAMES)
        if details == "plain":
            assert per_class == pytest.approx({name: c / 10 for c, name in enumerate(CLASS_NAMES)})
            np.testing.assert_allclose(chosen, model.plain)
        else:
            assert per_class == {name: 1.0 for name in CLASS_NAMES}
            np.testing.assert_allclose(chosen, (model.plain + model.mirrored) / 2, rtol=1e-6)
        matrix = np.array(metrics["confusion_matrix"])
        if details == "plain":  # the wrong ones of class c went to class c + 1
            assert [matrix[c, (c + 1) % 10] for c in range(10)] == [10 - c for c in range(10)]


@pytest.mark.parametrize("labels, message", [
    (np.arange(99) % 10, r"shape \(100,\) or \(100, 1\)\. Received: shape \(99,\)"),
    (np.zeros((100, 2), dtype="int64"), r"Received: shape \(100, 2\)"),
    (np.zeros(100, dtype="float32"), r"integer class index.*dtype float32"),
    (np.full(100, 10), r"in \[0, 10\)\. Received: values from 10 to 10"),
])
def test_labels_that_are_not_one_class_per_image_are_refused(labels, message):
    images = np.zeros((100, 32, 32, 3), dtype="uint8")
    oracle = _ConfidentOracle(np.arange(100) % 10)
    with pytest.raises(ValueError, match=message):
        ev.evaluate(oracle, images, labels, transforms=())


def test_one_hot_labels_probabilities_for_predictions_and_a_metrics_matrix_are_named():
    # Before: one-hot labels were refused without the fix; probabilities as
    # `predictions` an IndexError, a prediction of -1 counted as class 9;
    # the metrics' list-of-lists matrix an AttributeError, a list of
    # probabilities a TypeError.
    labels = np.arange(20) % 10
    probabilities = np.eye(10, dtype="float32")[labels]
    for call, message in (
        (lambda: ev.accuracy(probabilities, probabilities),
         "`labels` must hold one integer class index per image: shape (20,) or (20, 1) (not one-hot rows "
         "or probabilities: pass `labels.argmax(axis=-1)`). Received: shape (20, 10), dtype float32"),
        (lambda: ev.accuracy(probabilities, labels.astype("float64")),
         "(whole numbers as floats: pass `labels.astype(int)`). Received: shape (20,), dtype float64"),
        (lambda: ev.confusion_matrix(labels, probabilities),
         "`predictions` must hold one integer class index per image: shape (20,) or (20, 1) (not one-hot "
         "rows or probabilities: pass `predictions.argmax(axis=-1)`)"),
        (lambda: ev.confusion_matrix(labels, np.full(20, -1)),
         "`predictions` must be class indices in [0, 10). Received: values from -1 to -1"),
        (lambda: ev.per_class_accuracy(np.arange(10)),
         "`matrix` must be a square confusion matrix, (classes, classes) counts. Received: shape (10,)"),
        (lambda: ev.most_confident_mistakes(np.arange(20), labels),
         "`probabilities` must be an (N, classes) array of class probabilities, as `predict` gives them. "
         "Received: shape (20,)"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            call()
    metrics, _ = ev.evaluate(_ConfidentOracle(labels), np.zeros((20, 32, 32, 3), "uint8"), labels,
                             transforms=())
    assert ev.per_class_accuracy(metrics["confusion_matrix"]) == [1.0] * 10
    assert ev.most_confident_mistakes(np.roll(probabilities, 1, axis=1).tolist(), labels).tolist() == list(range(20))


def test_a_model_path_a_transform_name_or_no_images_are_named_before_predicting():
    # Before: AttributeError "'str' object has no attribute 'predict'" for a
    # path, TypeErrors for "flip", a bare function or None as `transforms`
    # and for images=None; a string of 5 letters as images was taken for 5
    # images, and refused as labels of the wrong count.
    from keras_resnet.predict import predict

    labels = np.arange(20) % 10
    images = np.zeros((20, 32, 32, 3), "uint8")
    oracle = _ConfidentOracle(labels)
    for call, message in (
        (lambda: ev.evaluate("runs/x/model.keras", images, labels),
         "`model` must be a Keras model or a classifier from `load_classifier(path)` (a loaded model, not a "
         "path: pass `load_classifier(model)[0]`). Received: model='runs/x/model.keras'"),
        (lambda: ev.predict_tta(None, images), "Received: model=None"),
        (lambda: predict("model.keras", images),
         "(a loaded model, not a path: pass `load_classifier(classifier)[0]`). Received: classifier='model.keras'"),
        (lambda: ev.evaluate(oracle, images, labels, transforms="flip-shift"),
         "`transforms` must be a list or tuple of functions from an image batch to an image batch, () for "
         "none: pass TTA_TRANSFORMS['flip-shift']. Received: transforms='flip-shift'"),
        (lambda: ev.predict_tta(oracle, images, transforms=ev.flip_left_right),
         ": pass (flip_left_right,). Received: transforms=<function flip_left_right"),
        (lambda: ev.predict_tta(oracle, images, transforms=None), "Received: transforms=None"),
        (lambda: ev.evaluate(oracle, None, labels), "as an array. Received: NoneType"),
        (lambda: ev.evaluate(oracle, "x.png", labels), "as an array. Received: str"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            call()


def test_per_class_accuracy_of_a_missing_class_is_none():
    matrix = ev.confusion_matrix([0, 0, 1], [0, 1, 1], num_classes=3)
    assert ev.per_class_accuracy(matrix) == [0.5, 1.0, None]


def test_a_confusion_matrix_of_labels_in_a_column_counts_each_image_once():
    # A column, as keras.datasets.cifar10 gives labels, was broadcast against
    # the predictions: N * N counts, and per_class_accuracy made of them.
    matrix = ev.confusion_matrix(np.array([[0], [0], [1]]), [0, 1, 1], num_classes=3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]
    assert ev.per_class_accuracy(matrix) == [0.5, 1.0, None]


def test_plots_are_valid_pngs(tmp_path, tiny_model, balanced_test):
    from keras_resnet.data import CLASS_NAMES

    x, y = balanced_test
    metrics, probabilities = ev.evaluate(tiny_model, x, y)
    _check_png(plots.plot_confusion_matrix(
        metrics["confusion_matrix"], CLASS_NAMES, str(tmp_path / "cm.png")))
    indices = ev.most_confident_mistakes(probabilities, y, 12)
    _check_png(plots.plot_mistakes(
        x, y, probabilities, indices, CLASS_NAMES, str(tmp_path / "m.png")))
    _check_png(plots.plot_mistakes(
        x, y, probabilities, [], CLASS_NAMES, str(tmp_path / "none.png")), (150, 100))

    history = tmp_path / "history.csv"
    history.write_text(HISTORY)
    paths = plots.plot_training_curves(str(history), str(tmp_path / "curves"))
    assert sorted(paths) == ["accuracy", "learning_rate", "loss"]
    for path in paths.values():
        _check_png(path)


def test_an_unreadable_history_value_is_named_and_the_other_curves_drawn(
        tmp_path, capsys, tiny_model, fake_cifar):
    # The loss curve was left out without a word.
    run = tmp_path / "run"
    run.mkdir()
    (run / "history.csv").write_text(HISTORY.replace(",2.38,", ",tf.Tensor(2.38),"))
    tiny_model.save(str(run / "model.keras"))
    assert ev.main(["--model", str(run / "model.keras"), "--data-dir", fake_cifar,
                    "--mistakes", "0"]) == 0
    out, err = capsys.readouterr()
    assert sorted(json.loads(out.strip().splitlines()[-1])["plots"]) == [
        "accuracy", "confusion_matrix", "learning_rate"]
    assert (f"warning: no loss curve: the loss of {run / 'history.csv'} holds "
            "'tf.Tensor(2.38)', not a number\n") in err


def test_the_mistakes_grid_names_the_model_and_the_tta_it_shows(
        tmp_path, capsys, monkeypatch, tiny_model, fake_cifar):
    # Its title was the same with --tta and without, over other images and
    # other confidences; the confusion matrix's named both.
    figures = []
    new_figure = plots._new_figure
    monkeypatch.setattr(plots, "_new_figure", lambda size: figures.append(new_figure(size)) or figures[-1])
    tiny_model.save(str(tmp_path / "m.keras"))
    for flags in ([], ["--tta"]):
        argv = ["--model", str(tmp_path / "m.keras"), "--data-dir", fake_cifar,
                "--output-dir", str(tmp_path / f"report{len(flags)}"), *flags]
        assert ev.main(argv) == 0
    capsys.readouterr()
    titles = [figure.get_suptitle() for figure in figures if figure.get_suptitle()]
    name = f"m.keras ({tiny_model.name})"
    assert titles == [f"Most confidently misclassified test images: {name}",
                      f"Most confidently misclassified test images: {name} (flip TTA)"]
    # The confusion matrix's title, above its count and accuracy, names them alike.
    titles = [axes.get_title().split("\n")[0] for figure in figures for axes in figure.axes
              if axes.get_title().startswith("Confusion matrix")]
    assert titles == [f"Confusion matrix: {name}", f"Confusion matrix: {name} (flip TTA)"]


def test_the_mistakes_grid_shows_the_most_confident_mistakes_asked_for(tmp_path, capsys, monkeypatch,
                                                                      tiny_model):
    from keras_resnet.classifier import load_classifier
    from keras_resnet.data import load_cifar10_test

    data = write_fake_cifar(str(tmp_path / "cifar"), per_batch=4, test_count=100)
    model = str(tmp_path / "m.keras")
    tiny_model.save(model)
    shown = []

    def plot_mistakes(images, labels, probabilities, indices, class_names, path, title):
        shown.append(list(indices))
        return path

    monkeypatch.setattr(ev, "plot_mistakes", plot_mistakes)
    for flags in ([], ["--mistakes", "7"]):  # 25 by default
        argv = ["--model", model, "--data-dir", data, "--output-dir", str(tmp_path / f"r{len(flags)}"), *flags]
        assert ev.main(argv) == 0
    capsys.readouterr()
    x, y, _ = load_cifar10_test(data)
    _, probabilities = ev.evaluate(load_classifier(model)[0], x, y)
    ranked = ev.most_confident_mistakes(probabilities, y, count=100).tolist()
    assert len(ranked) > 25  # else no test
    assert shown == [ranked[:25], ranked[:7]]


def test_a_report_folder_holding_a_folder_where_a_plot_goes_is_refused(
        tmp_path, capsys, tiny_model, fake_cifar):
    tiny_model.save(str(tmp_path / "m.keras"))
    (tmp_path / "report" / "mistakes.png").mkdir(parents=True)
    line = _error_line(capsys, ["--model", str(tmp_path / "m.keras"), "--data-dir", fake_cifar,
                                "--output-dir", str(tmp_path / "report")])
    assert f"{tmp_path / 'report' / 'mistakes.png'} is not a file" in line, line  # was IsADirectoryError
    assert os.listdir(tmp_path / "report") == ["mistakes.png"]


def test_plots_of_the_users_own_are_not_replaced(tmp_path, capsys, tiny_model, fake_cifar):
    tiny_model.save(str(tmp_path / "m.keras"))
    folder = tmp_path / "mydocs"
    folder.mkdir()
    (folder / "loss.png").write_text("my precious plot")
    line = _error_line(capsys, ["--model", str(tmp_path / "m.keras"), "--data-dir", fake_cifar,
                                "--output-dir", str(folder), "--mistakes", "0"])
    assert line.endswith(f"{folder} holds loss.png but no evaluation.json: files that no report "
                         "of this command wrote, which this one would replace; move them, or "
                         "choose another --output-dir."), line
    assert os.listdir(folder) == ["loss.png"]
    assert (folder / "loss.png").read_text() == "my precious plot"


def _model_beside_a_run(tmp_path, tiny_model):
    """`tmp_path/m.keras`, and `tmp_path/run` holding a `history.csv`, for
    `--run-dir` (the model is not in it: without the flag, no curves)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "history.csv").write_text(HISTORY)
    tiny_model.save(str(tmp_path / "m.keras"))
    return str(tmp_path / "m.keras"), str(run)


def test_a_new_report_leaves_no_plot_of_the_report_it_replaces(tmp_path, capsys, tiny_model):
    data = write_fake_cifar(str(tmp_path / "cifar"), per_batch=4, test_count=50)
    model, run = _model_beside_a_run(tmp_path, tiny_model)
    report = tmp_path / "report"
    report.mkdir()
    (report / "notes.png").write_text("the user's own")

    def evaluate(*flags):
        argv = ["--model", model, "--data-dir", data, "--output-dir", str(report), *flags]
        assert ev.main(argv) == 0
        return json.loads(capsys.readouterr().out.strip().splitlines()[-1])["plots"]

    assert sorted(evaluate("--run-dir", run)) == [
        "accuracy", "confusion_matrix", "learning_rate", "loss", "mistakes"]
    # A curve the run's history no longer gives (its loss unreadable now):
    # the old report's loss.png goes.
    with open(os.path.join(run, "history.csv"), "w") as f:
        f.write(HISTORY.replace(",2.38,", ",x,"))
    assert sorted(evaluate("--run-dir", run)) == ["accuracy", "confusion_matrix", "learning_rate", "mistakes"]
    assert "loss.png" not in os.listdir(report)
    # Without a run: no curves. --mistakes 0 drew a grid saying "No
    # misclassified images."; and the old curves stayed beside the report.
    assert sorted(evaluate("--mistakes", "0")) == ["confusion_matrix"]
    assert sorted(os.listdir(report)) == ["confusion_matrix.png", "evaluation.json", "notes.png"]


def test_a_report_stopped_while_its_plots_are_drawn_is_renewed_by_the_next(
        tmp_path, capsys, monkeypatch, tiny_model, fake_cifar):
    # Stopped after confusion_matrix.png (a Ctrl-C; --mistakes 100000 was
    # still drawing after 25 minutes), the folder held plots and no
    # evaluation.json, and the same command refused them as "files that no
    # report of this command wrote".
    model, run = _model_beside_a_run(tmp_path, tiny_model)
    report = tmp_path / "report"
    argv = ["--model", model, "--data-dir", fake_cifar, "--output-dir", str(report)]

    def stopped(*flags):
        def stop(*args, **kwargs):
            raise KeyboardInterrupt

        with monkeypatch.context() as patch:
            patch.setattr(ev, "plot_mistakes", stop)  # where evaluate.main looks it up
            assert ev.main([*argv, *flags]) == 130
        assert capsys.readouterr().err.strip().splitlines()[-1] == (
            "Interrupted before the report was finished; the same command writes it again.")

    stopped("--run-dir", run)
    assert sorted(os.listdir(report)) == ["confusion_matrix.png", "evaluation.json"]
    assert ev.main([*argv, "--run-dir", run]) == 0, capsys.readouterr().err
    assert len(os.listdir(report)) == 6
    stopped()  # now without the run: no curves
    assert ev.main(argv) == 0
    capsys.readouterr()
    # No curve of the first report beside the last.
    assert sorted(os.listdir(report)) == ["confusion_matrix.png", "evaluation.json", "mistakes.png"]


def test_a_report_of_another_model_is_not_replaced(tmp_path, capsys, tiny_model, fake_cifar):
    for name in ("a", "b"):
        tiny_model.save(str(tmp_path / f"{name}.keras"))
    report = tmp_path / "report"
    argv = ["--data-dir", fake_cifar, "--output-dir", str(report), "--mistakes", "0"]
    assert ev.main(["--model", str(tmp_path / "a.keras"), *argv]) == 0
    capsys.readouterr()
    before = (report / "evaluation.json").read_text()
    line = _error_line(capsys, ["--model", str(tmp_path / "b.keras"), *argv])  # replaced it
    assert line.endswith(f"--output-dir {report} holds the evaluation.json of "
                         f"{tmp_path / 'a.keras'}; choose another folder (or leave --output-dir "
                         "out), or delete that report first."), line
    assert (report / "evaluation.json").read_text() == before


def test_an_evaluation_json_of_another_program_is_not_replaced(tmp_path, capsys, monkeypatch, tiny_model,
                                                               fake_cifar):
    # One that is no report of this command's (not JSON, not an object, or
    # naming no model) is another program's: --output-dir there is refused,
    # and the default folder is left for the next one.
    monkeypatch.chdir(tmp_path)
    tiny_model.save("m.keras")
    argv = ["--model", "m.keras", "--data-dir", fake_cifar, "--mistakes", "0"]
    for content in ("not JSON", "[1, 2]", '{"test_accuracy": 0.9}'):
        for folder in ("mine", os.path.join("evaluation", "m")):
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, "evaluation.json"), "w") as f:
                f.write(content)
        line = _error_line(capsys, [*argv, "--output-dir", "mine"])
        assert line.endswith("--output-dir mine holds the evaluation.json of another program; choose "
                             "another folder (or leave --output-dir out), or delete that report first."), line
        assert ev.main(argv) == 0
        assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["output_dir"] == os.path.join(
            "evaluation", "m-2")
        shutil.rmtree(os.path.join("evaluation", "m-2"))
        for folder in ("mine", os.path.join("evaluation", "m")):
            with open(os.path.join(folder, "evaluation.json")) as f:
                assert f.read() == content


def test_reports_of_two_models_with_one_name_do_not_replace_each_other(
        tmp_path, capsys, monkeypatch, tiny_model, fake_cifar):
    monkeypatch.chdir(tmp_path)
    for folder in ("a", "b"):  # no run folders: both report under evaluation/model
        os.mkdir(folder)
        tiny_model.save(os.path.join(folder, "model.keras"))
    reports = []
    for model in ("a/model.keras", "b/model.keras", "a/model.keras"):
        assert ev.main(["--model", model, "--data-dir", fake_cifar]) == 0
        reports.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1])["output_dir"])
    assert reports == [os.path.join("evaluation", "model"), os.path.join("evaluation", "model-2"),
                       os.path.join("evaluation", "model")]  # a's own report, renewed
    with open(os.path.join("evaluation", "model-2", "evaluation.json")) as f:
        assert json.load(f)["model"] == str(tmp_path / "b" / "model.keras")
    # From another folder, a's report is still a's (it held the path as
    # typed, "a/model.keras", and was refused as another model's from a/).
    monkeypatch.chdir(tmp_path / "a")
    assert ev.main(["--model", "model.keras", "--data-dir", fake_cifar,
                    "--output-dir", os.path.join("..", "evaluation", "model")]) == 0


def test_find_run_dir(tmp_path, monkeypatch):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "history.csv").write_text(HISTORY)
    assert ev.find_run_dir(str(run / "model.keras")) == str(run)
    assert ev.find_run_dir(str(run / "checkpoints" / "best.keras")) == str(run)
    assert ev.find_run_dir(str(tmp_path / "elsewhere" / "model.keras")) is None
    # Given relative, it stays relative, as the report's other paths do (it
    # came back absolute, and the report's output_dir with it).
    monkeypatch.chdir(tmp_path)
    assert ev.find_run_dir(os.path.join("run", "checkpoints", "best.keras")) == "run"
    monkeypatch.chdir(run)
    assert ev.find_run_dir("model.keras") == "."
    monkeypatch.chdir(run / "checkpoints")
    assert ev.find_run_dir("best.keras") == ".."


# --------------------------------------------------------------------------
# The command line.


def _error_line(capsys, argv):
    assert ev.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_cli_rejects_a_file_that_is_not_a_model(tmp_path, capsys, fake_cifar):
    bogus = tmp_path / "bogus.keras"
    bogus.write_text("not a model")
    line = _error_line(capsys, ["--model", str(bogus), "--data-dir", fake_cifar])
    assert "bogus.keras" in line
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    assert ".keras" in _error_line(capsys, ["--model", str(notes), "--data-dir", fake_cifar])


def _foreign_classifier(path, head):
    """Saves a small model of 32x32x3 images whose output is `head(x)`."""
    import keras

    images = keras.Input((32, 32, 3))
    features = keras.layers.GlobalAveragePooling2D()(images)
    keras.Model(images, head(features)).save(str(path))
    return str(path)


def _dense(activation=None, bias=0.0):
    import keras

    return keras.layers.Dense(10, activation=activation, bias_initializer=keras.initializers.Constant(bias))


@pytest.mark.parametrize("head, message", [
    (lambda x: {"probabilities": _dense("softmax")(x)}, "its output is a dict of 1, not one array"),
    (lambda x: _dense()(x), "does not output class probabilities"),
    (lambda x: _dense("softmax", bias=float("nan"))(x), "outputs sum to nan, not 1"),
])
def test_cli_rejects_a_model_that_is_not_one_classifier_of_probabilities(
        tmp_path, capsys, fake_cifar, head, message):
    model = _foreign_classifier(tmp_path / "foreign.keras", head)
    line = _error_line(capsys, ["--model", model, "--data-dir", fake_cifar])
    assert "foreign.keras" in line and message in line, line
    assert not (tmp_path / "evaluation").exists()


def test_a_sequential_classifier_from_elsewhere_loads(tmp_path):
    import keras

    from keras_resnet import load_model

    path = str(tmp_path / "sequential.keras")
    keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(),
                      keras.layers.Dense(10, activation="softmax")]).save(path)
    probabilities = load_model(path).predict(np.zeros((2, 32, 32, 3), "float32"), verbose=0)
    assert probabilities.shape == (2, 10)


def test_cli_rejects_an_output_dir_that_is_a_file(tmp_path, capsys, tiny_model, fake_cifar):
    tiny_model.save(str(tmp_path / "m.keras"))
    (tmp_path / "report").write_text("mine")
    line = _error_line(capsys, ["--model", str(tmp_path / "m.keras"), "--data-dir", fake_cifar,
                                "--output-dir", str(tmp_path / "report")])
    assert "--output-dir" in line and "cannot be created or written to as a folder" in line
    assert (tmp_path / "report").read_text() == "mine"


def test_a_mistakes_grid_too_large_to_draw_is_refused_before_anything_loads(tmp_path, capsys):
    # --mistakes 100000 (all 7,754 mistakes of a 22% model) was still
    # drawing its grid after 25 minutes.
    from keras_resnet.plots import MAX_MISTAKES

    argv = ["--model", str(tmp_path / "m.keras"), "--mistakes"]
    code, _, err = call_main(ev.main, [*argv, "100000"], capsys)
    assert code == 2 and err.splitlines() == [
        "python -m keras_resnet.evaluate: error: argument --mistakes: must be an integer from 0 "
        f"to {MAX_MISTAKES}, got '100000'"], err
    assert "--mistakes" not in _error_line(capsys, [*argv, str(MAX_MISTAKES)])  # no model there
    assert not os.listdir(tmp_path)


def test_cli_rejects_empty_folders_and_one_it_cannot_make(tmp_path, capsys, tiny_model, fake_cifar,
                                                         monkeypatch):
    # "" was taken for the flag left out; a folder that `os.access` allows
    # but cannot be made (/proc/x, /sys/x as root) was makedirs' traceback.
    monkeypatch.chdir(tmp_path)
    tiny_model.save(str(tmp_path / "m.keras"))
    argv = ["--model", str(tmp_path / "m.keras"), "--data-dir", fake_cifar]
    for flag, default in (("--output-dir", "the default report folder"),
                          ("--run-dir", "the .keras file's run")):
        line = _error_line(capsys, [*argv, flag, ""])
        assert line.endswith(f"{flag} is empty: name a folder, or leave it out for {default}."), line
    def refuse(path, *args, **kwargs):
        raise PermissionError(1, "Operation not permitted", path)
    monkeypatch.setattr(os, "makedirs", refuse)
    line = _error_line(capsys, [*argv, "--output-dir", str(tmp_path / "report")])
    assert line.endswith(f"--output-dir {tmp_path / 'report'} cannot be created (Operation not "
                         "permitted); choose another folder."), line
    assert sorted(os.listdir(tmp_path)) == ["cifar", "m.keras"]  # no report, here or in evaluation/


def test_cli_rejects_a_run_dir_without_history_and_a_link_where_a_plot_goes(
        tmp_path, capsys, tiny_model, fake_cifar):
    # Without the first, a wrong --run-dir was a warning and exit 0; without
    # the second, the plot was written through the link, outside the report.
    tiny_model.save(str(tmp_path / "m.keras"))
    argv = ["--model", str(tmp_path / "m.keras"), "--data-dir", fake_cifar]
    (tmp_path / "not_a_run").mkdir()
    line = _error_line(capsys, [*argv, "--run-dir", str(tmp_path / "not_a_run")])
    assert line.endswith(f"--run-dir {tmp_path / 'not_a_run'} holds no history.csv of a training run.")
    report = tmp_path / "report"
    report.mkdir()
    os.symlink(tmp_path / "elsewhere.png", report / "confusion_matrix.png")  # to nowhere
    line = _error_line(capsys, [*argv, "--output-dir", str(report)])
    assert line.endswith(f"{report / 'confusion_matrix.png'} is not a file (a folder, or a link to "
                         "nowhere), where the report writes one: move it, or choose another "
                         "--output-dir."), line
    assert not (tmp_path / "elsewhere.png").exists()


def test_a_run_dir_given_as_a_file_of_the_run_names_the_run_folder(tmp_path, capsys, fake_cifar):
    # It said "--run-dir run/history.csv holds no history.csv of a training
    # run." of the history file itself.
    run = tmp_path / "run"
    run.mkdir()
    (run / "history.csv").write_text(HISTORY)
    (tmp_path / "notes.csv").write_text("mine")
    argv = ["--model", str(run / "model.keras"), "--data-dir", fake_cifar]
    for given in (run / "history.csv", run / "config.json"):
        given.touch()
        line = _error_line(capsys, [*argv, "--run-dir", str(given)])
        assert line.endswith(f"--run-dir {given} is a file, not a run folder: pass its folder, {run}."), line
    line = _error_line(capsys, [*argv, "--run-dir", str(tmp_path / "notes.csv")])
    assert line.endswith(f"--run-dir {tmp_path / 'notes.csv'} is a file, not a run folder: pass the "
                         "folder that holds the run's history.csv."), line
    assert sorted(os.listdir(run)) == ["config.json", "history.csv"]


def test_cli_rejects_a_folder_without_a_saved_model(tmp_path, capsys, fake_cifar):
    (tmp_path / "empty").mkdir()
    line = _error_line(capsys, ["--model", str(tmp_path / "empty"), "--data-dir", fake_cifar])
    assert "holds no SavedModel" in line and "run folder" not in line
    (tmp_path / "run").mkdir()  # a training run's folder: its model.keras is meant
    (tmp_path / "run" / "model.keras").write_text("")
    line = _error_line(capsys, ["--model", str(tmp_path / "run"), "--data-dir", fake_cifar])
    assert line.endswith(f"It is a run folder: pass {tmp_path / 'run' / 'model.keras'}."), line
    # The export root (saved_models) for one of its models: no hint before.
    (tmp_path / "saved_models" / "keras_resnet" / "1").mkdir(parents=True)
    line = _error_line(capsys, ["--model", str(tmp_path / "saved_models"), "--data-dir", fake_cifar])
    assert line.endswith("It is an export root: pass one of its models, e.g. "
                         f"{tmp_path / 'saved_models' / 'keras_resnet'}."), line


def test_cli_names_a_missing_keras_file_and_a_saved_model_pb(tmp_path, capsys, fake_cifar):
    # Both said "(missing or wrong extension)": the first had the extension.
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "saved_model.pb").write_bytes(b"")
    # A .keras file renamed, "model.KERAS": said only "Expected a .keras model
    # file", of what the user took for one; Keras loads only that ending.
    for name, members in (("model.KERAS", ("metadata.json", "config.json")), ("images.zip", ("a.png",))):
        with zipfile.ZipFile(tmp_path / name, "w") as archive:
            for member in members:
                archive.writestr(member, "{}")
    for model, message in (
            ("nope.keras", f"No model at {tmp_path / 'nope.keras'}: pass --model a .keras file"),
            ("1/saved_model.pb", f"Expected a .keras model file, got "
                                 f"{str(tmp_path / '1' / 'saved_model.pb')!r} (an exported model's "
                                 "file: pass its version folder)."),
            ("model.KERAS", f"Expected a .keras model file, got {str(tmp_path / 'model.KERAS')!r} "
                            "(a Keras archive by its contents, which Keras loads only under a name "
                            "ending in .keras: rename it so)."),
            ("images.zip", f"Expected a .keras model file, got {str(tmp_path / 'images.zip')!r}.")):
        line = _error_line(capsys, ["--model", str(tmp_path / model), "--data-dir", fake_cifar])
        assert message in line, line


def test_cli_rejects_a_foreign_saved_model(tmp_path, capsys, fake_cifar):
    import tensorflow as tf

    module = tf.Module()
    module.f = tf.function(lambda x: {"y": x * 2},
                           input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    tf.saved_model.save(module, str(tmp_path / "other"), signatures=module.f)
    line = _error_line(capsys, ["--model", str(tmp_path / "other"), "--data-dir", fake_cifar])
    assert "not a keras-resnet SavedModel" in line


def _save_serving_module(path, output=0.1, class_names=None):
    """A SavedModel whose serving_default outputs `output` for every class,
    with a `class_names` signature when given."""
    import tensorflow as tf

    module = tf.Module()
    module.serve = tf.function(
        lambda images: {"probabilities": tf.fill([tf.shape(images)[0], 10], output)},
        input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32, name="images")])
    signatures = {"serving_default": module.serve}
    if class_names is not None:
        module.names = tf.function(lambda: {"class_names": tf.constant(class_names)},
                                   input_signature=[])
        signatures["class_names"] = module.names
    tf.saved_model.save(module, str(path), signatures=signatures)
    return str(path)


def test_cli_rejects_a_saved_model_that_names_other_than_ten_classes(tmp_path, capsys, fake_cifar):
    model = _save_serving_module(tmp_path / "three", class_names=["a", "b", "c"])
    line = _error_line(capsys, ["--model", model, "--data-dir", fake_cifar])
    assert "its class_names signature names 3 classes, expected 10" in line  # predict: IndexError


@pytest.mark.parametrize("output, total", [(float("nan"), "nan"), (1.0, "10")])
def test_cli_rejects_a_saved_model_that_does_not_output_probabilities(
        tmp_path, capsys, fake_cifar, output, total):
    # NaN outputs made predict print NaN, which is not JSON; logits were
    # evaluated as probabilities.
    model = _save_serving_module(tmp_path / "foreign", output)
    line = _error_line(capsys, ["--model", model, "--data-dir", fake_cifar])
    assert f"foreign does not output class probabilities (one image's outputs sum to {total}, not 1)" in line, line
    assert not (tmp_path / "evaluation").exists()


def test_cli_keras_and_saved_model_agree(tmp_path, tiny_model, capsys):
    from keras_resnet.export import export_saved_model

    run = tmp_path / "run"
    run.mkdir()
    (run / "history.csv").write_text(HISTORY)
    tiny_model.save(str(run / "model.keras"))
    export_saved_model(tiny_model, str(tmp_path / "sm"), "tiny")
    data = write_fake_cifar(str(tmp_path / "cifar"), per_batch=4, test_count=100)

    results = {}
    for kind, model, extra in (
        ("keras", str(run / "model.keras"), []),
        ("saved_model", str(tmp_path / "sm" / "tiny"), ["--output-dir", str(tmp_path / "out")]),
    ):
        argv = ["--model", model, "--data-dir", data, "--tta", *extra]
        if kind == "keras":  # in this process, which has Keras loaded already
            code, stdout, err = call_main(ev.main, argv, capsys)
            assert code == 0, err[-2000:]
        else:  # as a command
            out = run_python(["-m", "keras_resnet.evaluate", *argv])
            assert out.returncode == 0, out.stderr[-2000:]
            stdout = out.stdout
        results[kind] = result = json.loads(stdout.strip().splitlines()[-1])
        assert result["format"] == kind and result["test_images"] == 100
        for path in result["plots"].values():
            _check_png(path, (150, 100))

    keras_result, saved_result = results["keras"], results["saved_model"]
    assert keras_result["run_dir"] == str(run)
    assert sorted(keras_result["plots"]) == [
        "accuracy", "confusion_matrix", "learning_rate", "loss", "mistakes"]
    assert keras_result["output_dir"] == str(run / "evaluation" / "model")
    assert os.path.isfile(run / "evaluation" / "model" / "evaluation.json")
    assert saved_result["output_dir"] == str(tmp_path / "out")
    # The report names the version it evaluated, not just the model folder.
    assert saved_result["saved_model_version"] == str(tmp_path / "sm" / "tiny" / "1")
    assert "saved_model_version" not in keras_result
    for key in ("test_accuracy", "test_accuracy_tta", "per_class_accuracy"):
        assert keras_result[key] == saved_result[key], key
    assert keras_result["test_loss"] == pytest.approx(saved_result["test_loss"], abs=1e-5)


def test_cli_tta_reports_the_tta_details_and_the_plain_loss(tmp_path, tiny_model, capsys):
    # With --tta, the per-class accuracy and the confusion matrix describe
    # the TTA predictions (as the API's details="tta") of the --tta-views;
    # the test loss stays the plain prediction's, which the TTA views do
    # not change.
    from keras_resnet.data import load_cifar10

    data = write_fake_cifar(str(tmp_path / "cifar"), per_batch=4, test_count=100)
    model = str(tmp_path / "m.keras")
    tiny_model.save(model)
    reports, lines = {}, {}
    for name, flags in (("plain", []), ("tta", ["--tta"]), ("flip-shift", ["--tta", "--tta-views", "flip-shift"])):
        argv = ["--model", model, "--data-dir", data, "--mistakes", "0",
                "--output-dir", str(tmp_path / name), *flags]
        assert ev.main(argv) == 0
        lines[name] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        reports[name] = json.loads((tmp_path / name / "evaluation.json").read_text())
    test = load_cifar10(data)
    api = {details: ev.evaluate(tiny_model, test.x_test, test.y_test, details=details)[0]
           for details in ("plain", "tta")}
    api["flip-shift"] = ev.evaluate(tiny_model, test.x_test, test.y_test, details="tta",
                                    transforms=ev.TTA_TRANSFORMS["flip-shift"])[0]
    assert api["plain"]["confusion_matrix"] != api["tta"]["confusion_matrix"]  # else no test
    assert api["tta"]["confusion_matrix"] != api["flip-shift"]["confusion_matrix"]  # nor here
    assert api["plain"]["test_loss"] == api["tta"]["test_loss"]
    for name, report in reports.items():
        assert (report["details"], report["tta_views"]) == (
            "plain" if name == "plain" else "tta", "flip-shift" if name == "flip-shift" else "flip")
        assert report["confusion_matrix"] == api[name]["confusion_matrix"]
        assert report["per_class_accuracy"] == pytest.approx(api[name]["per_class_accuracy"])
        assert report["test_accuracy_tta"] == pytest.approx(api[name]["test_accuracy_tta"])
        assert report["test_loss"] == pytest.approx(api["plain"]["test_loss"], abs=1e-6)
        assert (report["format"], report["params"]) == ("keras", tiny_model.count_params())
        # The JSON line is the report but its matrix (drawn in confusion_matrix.png).
        assert lines[name] == {key: value for key, value in report.items() if key != "confusion_matrix"}


def test_a_saved_model_version_has_one_report_however_it_is_named(
        tmp_path, tiny_model, capsys, monkeypatch, fake_cifar):
    # The model folder and its version folder got two reports ("evaluation/
    # tiny-1", then "evaluation/tiny-1-2"), and --output-dir refused the second.
    from keras_resnet.export import export_saved_model

    monkeypatch.chdir(tmp_path)
    export_saved_model(tiny_model, "sm", "tiny")
    folders = []
    for model, extra in (("sm/tiny", []), ("sm/tiny/1", []), (str(tmp_path / "sm" / "tiny"), []),
                         ("sm/tiny/1", ["--output-dir", os.path.join("evaluation", "tiny-1")])):
        code, out, err = call_main(ev.main, ["--model", model, "--data-dir", fake_cifar,
                                             "--mistakes", "0", *extra], capsys)
        assert code == 0, err[-2000:]
        folders.append(json.loads(out.strip().splitlines()[-1])["output_dir"])
    assert folders == [os.path.join("evaluation", "tiny-1")] * 4
    assert os.listdir("evaluation") == ["tiny-1"]
    # From another folder it is still this version's report (the version
    # it names is absolute, as the model is).
    monkeypatch.chdir(tmp_path / "sm")
    code, _, err = call_main(ev.main, ["--model", "tiny", "--data-dir", fake_cifar, "--mistakes", "0",
                                       "--output-dir", os.path.join("..", "evaluation", "tiny-1")], capsys)
    assert code == 0, err[-2000:]


def test_the_evaluation_api_names_a_bad_argument(tmp_path, tiny_model, monkeypatch):
    # Each failed deep inside (Keras' "batch_outputs", a TF shape error, an
    # IndexError), or went through: 64x64 images were evaluated, 11 names
    # gave a class "k", count=-1 dropped one mistake, and a SavedModel's
    # predict(batch_size=-2) returned no rows for 5 images.
    from keras_resnet.classifier import load_classifier
    from keras_resnet.export import export_saved_model

    x, y = np.zeros((5, 32, 32, 3), "uint8"), np.arange(5)
    for call, message in (
        (lambda: ev.evaluate(tiny_model, x[:0], y[:0]), r"Received: shape \(0, 32, 32, 3\)"),
        (lambda: ev.evaluate(tiny_model, np.zeros((5, 64, 64, 3)), y), r"shape \(N, 32, 32, 3\). "
                                                                      r"Received: shape \(5, 64, 64, 3\)"),
        (lambda: ev.evaluate(tiny_model, x, y, batch_size=0), "Received: batch_size=0"),
        (lambda: ev.evaluate(tiny_model, x, y, batch_size="32"), "Received: batch_size='32'"),
        (lambda: ev.evaluate(tiny_model, x, y, class_names=tuple("abcdefghijk")),
         "`class_names` must name each of the model's 10 classes. Received: 11 names"),
        # Per-class accuracy is keyed by name: it reported one class "a";
        # a string of ten letters was taken for ten names.
        (lambda: ev.evaluate(tiny_model, x, y, class_names=("a",) * 10),
         r"`class_names` must be a list or tuple of distinct names \('a' is given 10 times\)"),
        (lambda: ev.evaluate(tiny_model, x, y, class_names="abcdefghij"),
         "`class_names` must be a list or tuple of one-line, non-empty strings. "
         "Received: class_names='abcdefghij'"),
        # Else a misspelt `details` describes the plain predictions without a word.
        (lambda: ev.evaluate(tiny_model, x, y, details="TTA"), r'`details` must be "plain" or "tta"\. Received: \'TTA\''),
        (lambda: ev.most_confident_mistakes(np.full((5, 10), 0.1), y, count=-1),
         "`count` must be a non-negative integer. Received: count=-1"),
    ):
        with pytest.raises(ValueError, match=message):
            call()
    with pytest.raises(ValueError, match="--model must be the path of a .keras file or a "
                                         "SavedModel folder; got None."):  # a TypeError
        load_classifier(None)
    monkeypatch.chdir(tmp_path)
    classifier, _ = load_classifier(export_saved_model(tiny_model, "sm", "tiny"))
    assert classifier.predict(x, batch_size=2).shape == (5, 10)
    with pytest.raises(ValueError, match="`batch_size` must be a positive integer. Received: batch_size=-2"):
        classifier.predict(x, batch_size=-2)


def test_a_batch_larger_than_a_c_long_is_one_batch_of_every_image(tmp_path, tiny_model, capsys):
    # `--batch-size 99999999999999999999` (or the API's batch_size=2**64)
    # ended in Keras' predict with "OverflowError: Python int too large to
    # convert to C long", a traceback after the report folder was made. A
    # batch of more images than there are is one batch of them all.
    from keras_resnet.classifier import KerasClassifier

    data = write_fake_cifar(str(tmp_path / "cifar"), per_batch=4, test_count=20)
    model = str(tmp_path / "m.keras")
    tiny_model.save(model)
    reports = {}
    for batch_size in ("256", str(2**64)):
        argv = ["--model", model, "--data-dir", data, "--mistakes", "0", "--batch-size", batch_size,
                "--output-dir", str(tmp_path / batch_size)]
        code, stdout, err = call_main(ev.main, argv, capsys)
        assert code == 0, err[-2000:]
        reports[batch_size] = json.loads(stdout.strip().splitlines()[-1])
    for key in ("test_loss", "test_accuracy", "test_accuracy_tta", "per_class_accuracy"):
        assert reports[str(2**64)][key] == reports["256"][key], key
    x = np.zeros((3, 32, 32, 3), "uint8")
    np.testing.assert_allclose(ev.predict_tta(tiny_model, x, batch_size=2**64), ev.predict_tta(tiny_model, x))
    # The classifier `load_classifier` gives, whose predict is Keras'.
    np.testing.assert_allclose(KerasClassifier(tiny_model).predict(x, batch_size=2**64),
                               ev.predict_tta(tiny_model, x, transforms=()))


def test_paths_and_models_of_the_wrong_type_are_named(tmp_path, tiny_model, monkeypatch):
    # Each a TypeError from os or an AttributeError before ("'str' object
    # has no attribute 'name'" for a path wrapped as a KerasClassifier).
    from keras_resnet.classifier import KerasClassifier
    from keras_resnet.classifier import SavedModelClassifier
    from keras_resnet.data import load_cifar10
    from keras_resnet.data import load_cifar10_test
    from keras_resnet.export import export_saved_model

    monkeypatch.chdir(tmp_path)
    for call, message in (
        (lambda: export_saved_model(tiny_model, None), "`export_dir` must be a path (a str or os.PathLike). "
                                                       "Received: export_dir=None"),
        (lambda: SavedModelClassifier(None), "`path` must be a path (a str or os.PathLike). Received: path=None"),
        (lambda: KerasClassifier("model.keras"), "(a loaded model, not a path: pass `load_classifier(model)[0]`)"),
        (lambda: load_cifar10(["cifar"]), "`data_dir` must be a path (a str or os.PathLike). "
                                          "Received: data_dir=['cifar']"),
        (lambda: load_cifar10_test(b"cifar"), "Received: data_dir=b'cifar'"),
        (lambda: ev.find_run_dir(None), "Received: model_path=None"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            call()
    assert not os.listdir(tmp_path)


def test_an_incomplete_highest_version_is_refused_not_skipped(tmp_path):
    from keras_resnet.classifier import ModelError, resolve_saved_model

    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "1" / "saved_model.pb").write_bytes(b"")
    assert resolve_saved_model(str(tmp_path / "m")) == str(tmp_path / "m" / "1")
    (tmp_path / "m" / "2").mkdir()  # an export that stopped half-way
    with pytest.raises(ModelError, match=r"its highest version .*2 holds no saved_model.pb"):
        resolve_saved_model(str(tmp_path / "m"))


def test_a_saved_model_with_cut_variables_names_the_fix(tmp_path, tiny_model):
    from keras_resnet.classifier import ModelError, load_classifier
    from keras_resnet.export import export_saved_model

    version = export_saved_model(tiny_model, str(tmp_path), "m")
    data = os.path.join(version, "variables", "variables.data-00000-of-00001")
    with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) // 2)
    with pytest.raises(ModelError, match=r"^Cannot load .* as a SavedModel: .*\. If it was exported "
                                         r"whole once, export it again \(python -m keras_resnet.export"):
        load_classifier(version)


def test_an_empty_data_dir_is_refused_as_train_py_refuses_it(tmp_path, capsys, tiny_model, fake_cifar,
                                                               monkeypatch):
    # It fell back to $CIFAR10_DIR, or to tfds, without a word.
    monkeypatch.setenv("CIFAR10_DIR", fake_cifar)
    tiny_model.save(str(tmp_path / "m.keras"))
    line = _error_line(capsys, ["--model", str(tmp_path / "m.keras"), "--data-dir", "",
                                "--output-dir", str(tmp_path / "report")])
    assert line.endswith("--data-dir: no such folder ''; give a python-version CIFAR-10 folder "
                         "(data_batch_1..5, test_batch, batches.meta)."), line
    assert not (tmp_path / "report").exists()


def test_a_stale_cifar10_dir_is_named_before_the_model_loads(tmp_path, capsys, monkeypatch):
    # It said "CIFAR-10 folder not found: /nope. Pass --data-dir (or set
    # $CIFAR10_DIR)", after loading the model; train.py names the variable.
    missing = str(tmp_path / "nope")
    monkeypatch.setenv("CIFAR10_DIR", missing)
    line = _error_line(capsys, ["--model", str(tmp_path / "not-loaded.keras"),
                                "--output-dir", str(tmp_path / "report")])
    assert line == (f"python -m keras_resnet.evaluate: error: $CIFAR10_DIR (read for --data-dir): no such "
                    f"folder {missing!r}; give a python-version CIFAR-10 folder (data_batch_1..5, "
                    "test_batch, batches.meta).")
    assert not (tmp_path / "report").exists()


def test_an_evaluation_reads_only_the_test_batch(tmp_path, capsys, tiny_model, fake_cifar):
    # It read all five training batches too, and refused a folder of the
    # test batch alone ("CIFAR-10 file missing: .../data_batch_1").
    test_only = tmp_path / "test-only"
    test_only.mkdir()
    for name in ("test_batch", "batches.meta"):
        shutil.copy(os.path.join(fake_cifar, name), test_only / name)
    tiny_model.save(str(tmp_path / "m.keras"))
    results = []
    for data_dir in (fake_cifar, str(test_only)):
        argv = ["--model", str(tmp_path / "m.keras"), "--data-dir", data_dir, "--mistakes", "0",
                "--output-dir", str(tmp_path / os.path.basename(data_dir))]
        assert ev.main(argv) == 0
        results.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    assert results[0]["test_accuracy"] == results[1]["test_accuracy"]
    assert results[0]["per_class_accuracy"] == results[1]["per_class_accuracy"]


def test_ctrl_c_during_the_evaluate_command_is_one_line(tmp_path, capsys, monkeypatch, tiny_model,
                                                         fake_cifar):
    # A traceback through TensorFlow before, as export's and bench's were
    # (stopped while the plots are drawn: the test of a stopped report above).
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    tiny_model.save(str(tmp_path / "m.keras"))
    monkeypatch.setattr(ev, "load_classifier", interrupted)
    argv = ["--model", str(tmp_path / "m.keras"), "--data-dir", fake_cifar,
            "--output-dir", str(tmp_path / "report")]
    try:
        code, out, err = call_main(ev.main, argv, capsys)
    except KeyboardInterrupt:
        pytest.fail("the Ctrl-C went out of the evaluate command as a KeyboardInterrupt")
    assert (code, out) == (130, "")
    assert err.strip().splitlines() == [
        "Interrupted before the report was finished; the same command writes it again."], err
    assert not (tmp_path / "report").exists()
