import dataclasses
import itertools
import json
import math
import os
import re

import keras
import numpy as np
import pytest

from keras_resnet import build_model
from keras_resnet import data
from keras_resnet.config import MAX_EPOCHS
from keras_resnet.config import ConfigError
from keras_resnet.config import TrainConfig
from keras_resnet.training import compile_model
from keras_resnet.training import fit_inputs
from keras_resnet.training import learning_rate_schedule
from tests.conftest import run_python


def test_loss_falls_on_real_data(real_cifar):
    keras.utils.set_random_seed(0)
    x, y = real_cifar.x_train[:1000], real_cifar.y_train[:1000]
    config = TrainConfig(epochs=4, batch_size=100, label_smoothing=0.0, warmup_epochs=0)
    model = build_model("seed")
    trainer, steps, kwargs = fit_inputs(model, config, (x, y), None)
    compile_model(trainer, config, steps)
    before = model.evaluate(x.astype("float32"), data.one_hot(y), verbose=0)[0]
    trainer.fit(epochs=4, verbose=0, **kwargs)
    after = model.evaluate(x.astype("float32"), data.one_hot(y), verbose=0)[0]
    # Well below chance (ln 10 = 2.30), which learning the class frequencies
    # alone does not reach: 1.50 here (1.51 on JAX), 2.33 when trained with
    # the labels shuffled apart from their images.
    assert after < 0.8 * before and after < 0.8 * math.log(10), (before, after)


def test_the_train_step_is_traced_once(real_cifar):
    # compile_model makes the optimizer's slots up front. Made inside the
    # first traced step instead, TensorFlow traces that step a second time.
    x, y = real_cifar.x_train[:40], real_cifar.y_train[:40]
    config = TrainConfig(epochs=2, batch_size=10, stage_filters=[8, 8, 8, 8])
    trainer, steps, kwargs = fit_inputs(build_model("seed", stage_filters=(8, 8, 8, 8)), config,
                                        (x, y), None)
    compile_model(trainer, config, steps)
    assert trainer.optimizer.built
    traces, train_step = [], trainer.train_step
    trainer.train_step = lambda batch: traces.append(batch) or train_step(batch)
    trainer.fit(epochs=2, verbose=0, **kwargs)
    assert len(traces) == 1


def test_xla_is_on_by_default_on_gpus_but_not_for_mirrored_strategy_over_several(monkeypatch):
    # Keras' own "auto" turns XLA off under a tf.distribute strategy: it
    # cannot compile the step MirroredStrategy runs on each of several
    # devices (`test_tensorflow_mirrored_strategy_on_two_cpu_devices`).
    from keras_resnet.training import resolve_jit_compile

    if keras.backend.backend() != "tensorflow":
        pytest.skip("TensorFlow's rule")
    for gpus, distribute, expected in [(0, False, False), (0, True, False), (1, False, True),
                                       (1, True, True), (2, False, True), (2, True, False)]:
        monkeypatch.setattr(keras.distribution, "list_devices",
                            lambda kind=None, n=gpus: [f"gpu:{i}" for i in range(n)])
        config = TrainConfig(distribute=distribute)
        assert resolve_jit_compile(config) is expected, (gpus, distribute)
        assert resolve_jit_compile(dataclasses.replace(config, jit_compile="on")) is True
        assert resolve_jit_compile(dataclasses.replace(config, jit_compile="off")) is False


def test_a_run_trains_under_xla_on_tensorflow_as_it_does_without(real_cifar):
    # `--jit-compile auto` compiles the training step with XLA on a
    # TensorFlow GPU, the main users' `python train.py`, which no other test
    # trains. XLA on the CPU compiles the same step: every op in it needs an
    # XLA kernel, and no layer may turn XLA off (Keras then trains without
    # it, with a warning only). The step holds what XLA is likeliest to
    # refuse: augmentation drawn inside it (device), Lookahead's restart
    # every 5th step (a cond) inside mixed_float16's loss scaling, faster
    # batch-norm offsets and the whitening stem (fast-cpu).
    from keras_resnet.model import adapt_whitening
    from keras_resnet.training import build_network, run_globals

    if keras.backend.backend() != "tensorflow":
        pytest.skip("XLA through TensorFlow's jit_compile")
    x, y = real_cifar.x_train[:96], real_cifar.y_train[:96]
    base = TrainConfig(preset="fast-cpu", epochs=1, batch_size=16, stage_filters=[8, 8, 8, 8], cutout=8,
                       lookahead=0.95, offset_lr_scale=16.0, precision="mixed_float16", warmup_epochs=0)

    def train_one_epoch(**changes):  # 6 steps
        config = dataclasses.replace(base, **changes)
        losses = []
        record = keras.callbacks.LambdaCallback(
            on_train_batch_end=lambda batch, logs: losses.append(float(logs["loss"])))
        with run_globals():
            keras.utils.set_random_seed(0)
            model = build_network(config)
            adapt_whitening(model, x)
            trainer, _, kwargs = fit_inputs(model, config, (x, y), None)
            compile_model(trainer, config, steps_per_epoch=6)
            trainer.fit(epochs=1, verbose=0, callbacks=[record], **kwargs)
        assert trainer.jit_compile is (config.jit_compile == "on")
        assert len(losses) == 6 and np.isfinite(losses).all()
        assert all(np.isfinite(w).all() for w in model.get_weights())
        return losses

    # The same batches (augmented on the host, outside the step) train alike.
    without_xla = train_one_epoch(augment_on="host", jit_compile="off")
    np.testing.assert_allclose(train_one_epoch(augment_on="host", jit_compile="on"), without_xla, rtol=1e-3)
    # Augmented inside the step, XLA draws other random numbers (TensorFlow's
    # stateless generators pick another algorithm under it), so other crops:
    # a loss like the others.
    on_device = train_one_epoch(augment_on="device", jit_compile="on")
    np.testing.assert_allclose(on_device, without_xla, atol=0.25)


@pytest.mark.parametrize("crop_padding", [0, 2])
def test_crop_padding_sets_the_largest_shift(crop_padding):
    # Images with distinct columns, so that a shift or a flip shows.
    x = np.broadcast_to(np.arange(32, dtype="uint8")[None, None, :, None] * 8, (64, 32, 32, 3))
    y = np.zeros(64, "int32")
    config = TrainConfig(batch_size=64, crop_padding=crop_padding)
    _, _, kwargs = fit_inputs(build_model("fast-cpu"), config, (np.ascontiguousarray(x), y), None)
    (batch, _), = list(kwargs["x"].take(1))
    shifts = set()
    for image in batch.numpy()[:, 16, :, 0]:
        row = image if image[0] < image[-1] else image[::-1]  # undo the flip
        shifts.add(int(row[16] // 8) - 16)
    assert max(abs(s) for s in shifts) == crop_padding


@pytest.mark.parametrize("augment_on", ["host", "device"])
def test_alternating_flips_mirror_each_image_every_other_epoch(augment_on):
    # Row 0 of image i is all i (its name, flipped or not); the other rows
    # rise left to right, so a mirrored image shows.
    x = np.broadcast_to(np.arange(32, dtype="uint8")[None, None, :, None] * 8, (12, 32, 32, 3)).copy()
    x[:, 0] = np.arange(12, dtype="uint8")[:, None, None]
    config = TrainConfig(batch_size=4, crop_padding=0, flip="alternating", augment_on=augment_on)
    trainer, _, kwargs = fit_inputs(build_model("fast-cpu"), config, (x, np.zeros(12, "int32")), None)
    if augment_on == "device":  # the augmentation layers must not flip again
        assert [layer.name for layer in trainer.get_layer("augment").layers] == ["pad_crop"]

    mirrored = []  # per epoch: image index -> mirrored?
    if augment_on == "host":
        stream = (b.numpy() for b, _ in kwargs["x"])
    else:
        stream = (kwargs["x"][i][0] for i in itertools.count())
    for _ in range(4):
        images = np.concatenate([next(stream) for _ in range(kwargs["steps_per_epoch"])])
        mirrored.append({int(im[0, 0, 0]): bool(im[16, 0, 0] > im[16, -1, 0]) for im in images})
    assert all(len(epoch) == 12 for epoch in mirrored)  # each image once per epoch
    first = [mirrored[0][i] for i in range(12)]
    np.testing.assert_array_equal(first, data.first_flips(12, config.seed))
    assert 0 < sum(first) < 12
    for epoch, seen in enumerate(mirrored):
        assert all(seen[i] == (first[i] != (epoch % 2 == 1)) for i in range(12)), epoch


def test_cosine_schedule_warms_up_then_decays():
    config = TrainConfig(epochs=10, batch_size=256, learning_rate=0.1, warmup_epochs=2)
    schedule = learning_rate_schedule(config, steps_per_epoch=100)
    rates = [float(schedule(step)) for step in (0, 100, 200, 600, 1000)]
    peak = 0.1 * 256 / 128  # scaled with the batch size
    # Linear from a tenth of the peak: half way there after one epoch of two.
    assert rates[0] == pytest.approx(0.1 * peak, rel=1e-4)
    assert rates[1] == pytest.approx(0.55 * peak, rel=1e-4)
    assert rates[2] == pytest.approx(peak, rel=1e-4)
    assert rates[3] < peak and rates[4] == pytest.approx(0.0, abs=1e-6)


def test_step_schedule():
    config = TrainConfig(epochs=4, schedule="step", learning_rate=0.1)
    schedule = learning_rate_schedule(config, steps_per_epoch=10)
    assert [round(float(schedule(s)), 6) for s in (0, 25, 35)] == [0.1, 0.01, 0.001]


def test_weight_decay_is_decoupled_and_spares_batch_norm():
    # What config.TrainConfig documents: with no gradient, one step shrinks
    # each convolution and dense kernel by (1 - lr * weight_decay) and leaves
    # BN scales and biases alone.
    config = TrainConfig(epochs=1, batch_size=128, learning_rate=0.1, warmup_epochs=0,
                         weight_decay=1e-2)
    model = compile_model(build_model("fast"), config, steps_per_epoch=10)
    optimizer = model.optimizer
    variables = model.trainable_variables
    before = [keras.ops.convert_to_numpy(v) for v in variables]
    optimizer.apply_gradients([(keras.ops.zeros(v.shape), v) for v in variables])
    kept = 1 - 0.1 * 1e-2
    for variable, old in zip(variables, before):
        new = keras.ops.convert_to_numpy(variable)
        if variable.path.endswith("kernel"):
            np.testing.assert_allclose(new, old * kept, rtol=1e-5, err_msg=variable.path)
        else:
            np.testing.assert_array_equal(new, old, err_msg=variable.path)


def test_step_schedule_divides_at_half_and_three_quarters_of_the_run():
    config = TrainConfig(epochs=4, schedule="step", learning_rate=0.1, batch_size=128)
    schedule = learning_rate_schedule(config, steps_per_epoch=10)  # 40 steps
    rates = [float(schedule(s)) for s in (20, 21, 30, 31, 40)]
    np.testing.assert_allclose(rates, [0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-6)


def test_warmup_takes_at_most_half_the_run():
    # README: "linear warmup of the cosine schedule (at most half the run)".
    config = TrainConfig(epochs=4, batch_size=128, learning_rate=0.1, warmup_epochs=3)
    schedule = learning_rate_schedule(config, steps_per_epoch=10)  # 40 steps, warmup 20
    rates = [float(schedule(s)) for s in (10, 19, 20, 30, 40)]
    assert rates[0] < rates[1] < rates[2]
    assert rates[2] == pytest.approx(0.1, rel=1e-5)
    assert rates[3] == pytest.approx(0.05, rel=1e-4)  # cosine half way down
    assert rates[4] == pytest.approx(0.0, abs=1e-7)


def test_weight_decay_spares_biases_and_offsets_that_are_not_zero():
    # As built, biases and batch-norm offsets are zero, and decaying zero
    # leaves it zero: set them first, so that a decay of them shows.
    config = TrainConfig(epochs=1, batch_size=128, learning_rate=0.1, warmup_epochs=0,
                         weight_decay=1e-2)
    model = compile_model(build_model("seed", stage_filters=(8, 8, 16, 16)), config, steps_per_epoch=10)
    variables = model.trainable_variables
    for variable in variables:
        if not variable.path.endswith("kernel"):
            variable.assign(np.full(variable.shape, 0.5, "float32"))
    assert {v.path.rsplit("/", 1)[-1] for v in variables} == {"kernel", "gamma", "beta", "bias"}
    before = [keras.ops.convert_to_numpy(v) for v in variables]
    model.optimizer.apply_gradients([(keras.ops.zeros(v.shape), v) for v in variables])
    for variable, old in zip(variables, before):
        new = keras.ops.convert_to_numpy(variable)
        if variable.path.endswith("kernel"):
            np.testing.assert_allclose(new, old * (1 - 0.1 * 1e-2), rtol=1e-5, err_msg=variable.path)
        else:
            np.testing.assert_array_equal(new, old, err_msg=variable.path)


@pytest.mark.parametrize("momentum", [0.9, 0.5])
def test_compiled_model_steps_with_nesterov_momentum_and_smooths_its_labels(momentum):
    config = TrainConfig(epochs=1, batch_size=128, learning_rate=0.1, warmup_epochs=0,
                         weight_decay=0.0, momentum=momentum, label_smoothing=0.2)
    model = compile_model(build_model("seed", stage_filters=(8, 8, 16, 16)), config, steps_per_epoch=10)
    variables = model.trainable_variables
    before = [keras.ops.convert_to_numpy(v) for v in variables]
    for _ in range(2):  # a constant gradient of ones
        model.optimizer.apply_gradients([(keras.ops.ones(v.shape), v) for v in variables])
    # Keras' Nesterov SGD: m = mu m - lr g; w += mu m - lr g. Two steps at
    # rates lr0, lr1 move each weight by -((1 + mu + mu**2) lr0 + (1 + mu) lr1),
    # -(2.71 lr0 + 1.9 lr1) at 0.9; without Nesterov, by -((1 + mu) lr0 + lr1).
    lr0, lr1 = (float(learning_rate_schedule(config, 10)(step)) for step in (0, 1))
    step = (1 + momentum + momentum**2) * lr0 + (1 + momentum) * lr1
    for variable, old in zip(variables, before):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), old - step,
                                   rtol=1e-5, atol=1e-6, err_msg=variable.path)
    targets = np.eye(10, dtype="float32")[[3, 7]]
    probabilities = np.full((2, 10), 0.05, "float32")
    probabilities[[0, 1], [3, 1]] = 0.55
    smoothed = targets * 0.8 + 0.02
    expected = -np.mean(np.sum(smoothed * np.log(probabilities), axis=-1))
    assert float(model.loss(targets, probabilities)) == pytest.approx(expected, rel=1e-5)


def test_config_rejects_unknown_keys_and_wrong_types():
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) \['widths'\]"):
        TrainConfig.from_dict({"widths": [1]})
    with pytest.raises(ConfigError, match="epochs must be int, got '10'"):
        TrainConfig.from_dict({"epochs": "10"})
    with pytest.raises(ConfigError, match="over the cap"):
        TrainConfig.from_dict({"stage_filters": [64, 128, 256, 1024]}).check_model()
    with pytest.raises(ConfigError, match=r"--flip must be one of \['random', 'alternating'\], got 'sideways'"):
        TrainConfig.from_dict({"flip": "sideways"}).validate()
    assert TrainConfig.from_dict({"learning_rate": 1}).learning_rate == 1


def test_what_takes_a_train_config_refuses_a_dict_or_none():
    # An AttributeError from inside each before ("'dict' object has no
    # attribute 'validate'", "... 'precision'", "... 'preset'").
    from keras_resnet.hypermodel import ResNetHyperModel
    from keras_resnet.training import build_network
    from keras_resnet.training import train

    for call in (train, build_network, ResNetHyperModel):
        with pytest.raises(ConfigError, match=re.escape(
                "`config` must be a TrainConfig: pass TrainConfig(**config). Received: config={'epochs': 1}")):
            call({"epochs": 1})
        with pytest.raises(ConfigError, match=re.escape("`config` must be a TrainConfig. Received: config=None")):
            call(None)


@pytest.mark.parametrize("refused, accepted, message", [
    # Each range's bound, refused, beside the nearest value it takes: a
    # momentum (or smoothing, dropout) of 1 trains nothing, a seed of 2**32
    # overflows NumPy's, and 90 is a percentage where a fraction is meant.
    (dict(momentum=1.0), dict(momentum=0.999), "--momentum must be in [0, 1), got 1.0."),
    (dict(label_smoothing=1.0), dict(label_smoothing=0.999),
     "--label-smoothing must be in [0, 1), got 1.0."),
    (dict(dropout=1.0), dict(dropout=0.999), "--dropout must be in [0, 1), got 1.0."),
    (dict(seed=2**32), dict(seed=2**32 - 1), "--seed must be in [0, 2**32), got 4294967296."),
    (dict(target_accuracy=90), dict(target_accuracy=1), "--target-accuracy must be in (0, 1], got 90."),
    (dict(epochs=MAX_EPOCHS + 1), dict(epochs=MAX_EPOCHS),
     "--epochs must be at most 1,000,000, got 1000001."),
    (dict(checkpoint_seconds=-1), dict(checkpoint_seconds=0), "--checkpoint-seconds must be >= 0, got -1."),
    # A rate of 0 trains nothing; a target of 0 is no target (none is set);
    # a negative warmup made a schedule that starts past its own warmup;
    # a --train-size 0 (from a JSON file) was "--batch-size 128 is larger
    # than the 0 training images".
    (dict(learning_rate=0.0), dict(learning_rate=1e-6), "--learning-rate must be positive, got 0.0."),
    (dict(target_accuracy=0.0), dict(target_accuracy=0.01), "--target-accuracy must be in (0, 1], got 0.0."),
    (dict(warmup_epochs=-1.0), dict(warmup_epochs=0.0), "--warmup-epochs must be >= 0, got -1.0."),
    (dict(ema=1.0), dict(ema=0.999), "--ema must be in [0, 1) (0 = off), got 1.0."),
    (dict(train_size=0), dict(train_size=1), "--train-size must be a positive integer, got 0."),
    (dict(num_processes=2, process_id=2), dict(num_processes=2, process_id=1),
     "--process-id must be in [0, 2), got 2."),
])
def test_config_refuses_each_range_at_its_bound(refused, accepted, message, monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "jax")  # what several processes need (read, not loaded)
    several = dict(coordinator_address="localhost:1234") if "num_processes" in refused else {}
    with pytest.raises(ConfigError) as info:
        TrainConfig(**refused, **several).validate()
    assert str(info.value) == message
    TrainConfig(**accepted, **several).validate()


@pytest.mark.parametrize("settings, message", [
    (dict(seed=1.5), "TrainConfig: seed must be int, got 1.5 (float)."),
    (dict(crop_padding=2.5), "TrainConfig: crop_padding must be int, got 2.5 (float)."),
    (dict(cutout=True), "TrainConfig: cutout must be int, got True (bool)."),
    (dict(export="no"), "TrainConfig: export must be bool, got 'no' (str)."),
    (dict(learning_rate="0.1"), "TrainConfig: learning_rate must be float, got '0.1' (str)."),
    (dict(stage_filters=8), "TrainConfig: stage_filters must be a non-empty list of positive integers, "
                            "got 8 (int)."),
    # An empty list advised "pass --stage-blocks with 0 values too"; a zero
    # width quoted build_model's Python argument.
    (dict(stage_filters=[]), "TrainConfig: stage_filters must be a non-empty list of positive integers, "
                             "got [] (list)."),
    (dict(stage_blocks=[2, 0, 2, 2]), "TrainConfig: stage_blocks must be a non-empty list of positive "
                                      "integers, got [2, 0, 2, 2] (list)."),
    # NumPy values, as a sweep over np.linspace gives them, say how to pass them.
    (dict(seed=np.int64(1)), "TrainConfig: seed must be int, got np.int64(1) (int64): pass Python "
                             "numbers (`.item()` of a NumPy scalar, `.tolist()` of an array)."),
    (dict(stage_filters=list(np.array([8, 8, 8, 8]))),
     "TrainConfig: stage_filters must be a non-empty list of positive integers, got [np.int64(8), np.int64(8), np.int64(8), "
     "np.int64(8)] (list): pass Python numbers (`.item()` of a NumPy scalar, `.tolist()` of an array)."),
])
def test_a_config_built_in_python_is_checked_before_anything_is_written(
        settings, message, tmp_path, fake_cifar):
    # These passed validate(), wrote the run folder, then failed deep in Keras
    # ("Expected seed argument to be an integer"), raised a bare TypeError, or
    # (export="no") exported.
    from keras_resnet.training import train

    config = TrainConfig(epochs=1, batch_size=25, data_dir=fake_cifar, stage_filters=[8, 8, 8, 8],
                         output_dir=str(tmp_path / "run"), export=False)
    for key, value in settings.items():
        setattr(config, key, value)
    with pytest.raises(ConfigError) as info:
        train(config)
    assert str(info.value) == message
    assert not (tmp_path / "run").exists()
    # Widths as a tuple are taken, as the lists config.json holds: the run's
    # own folder was "other settings" (a tuple is no list).
    config = TrainConfig(stage_filters=(8, 8, 16, 16), stage_blocks=(1, 1, 1, 1))
    config.validate()
    saved = json.loads(json.dumps(config.to_dict()))
    assert TrainConfig.saved_identity(saved) == config.identity()


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_trains_with_a_float32_output(precision, tmp_path, fake_cifar):
    from tests.conftest import run_python

    run_dir = tmp_path / "run"
    out = run_python(["train.py", "--epochs", "1", "--batch-size", "25", "--precision", precision,
                      "--data-dir", fake_cifar, "--stage-filters", "8,8,16,16", "--no-export",
                      "--output-dir", str(run_dir)])
    assert out.returncode == 0, out.stderr[-3000:]
    assert np.isfinite(json.loads(out.stdout.strip().splitlines()[-1])["test_loss"])
    model = keras.saving.load_model(str(run_dir / "model.keras"))
    assert model.get_layer("stem_conv").compute_dtype == precision.split("_")[1]
    assert model.get_layer("stem_conv").variable_dtype == "float32"
    assert model.get_layer("probabilities").compute_dtype == "float32"
    if precision == "mixed_float16":  # Keras adds loss scaling for float16
        optimizer = keras.saving.load_model(str(run_dir / "checkpoints" / "last.keras")).optimizer
        assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)


def test_weight_ema_replaces_the_weights_at_the_end(real_cifar):
    x, y = real_cifar.x_train[:64], real_cifar.y_train[:64]
    finals = {}
    for ema in (0.0, 0.5):
        keras.utils.set_random_seed(0)
        config = TrainConfig(epochs=2, batch_size=32, ema=ema, warmup_epochs=0)
        model = build_model("seed", stage_filters=(8, 8, 8, 8))
        trainer, steps, kwargs = fit_inputs(model, config, (x, y), None)
        compile_model(trainer, config, steps)
        assert trainer.optimizer.use_ema == bool(ema)
        if ema:  # --ema's value, not Keras' default of 0.99
            assert trainer.optimizer.ema_momentum == ema
        trainer.fit(epochs=2, verbose=0, **kwargs)
        finals[ema] = model.get_layer("logits").get_weights()[0]
    assert not np.allclose(finals[0.0], finals[0.5])


def test_lookahead_restarts_from_a_ramped_average_every_five_steps(real_cifar, tmp_path):
    from keras_resnet.optimizers import LookaheadSGD

    x, y = real_cifar.x_train[:96], real_cifar.y_train[:96]
    keras.utils.set_random_seed(0)
    config = TrainConfig(epochs=2, batch_size=16, lookahead=0.9, warmup_epochs=0)
    model = build_model("seed", stage_filters=(8, 8, 8, 8))
    trainer, steps, kwargs = fit_inputs(model, config, (x, y), None)
    compile_model(trainer, config, steps)
    optimizer = trainer.optimizer
    assert isinstance(optimizer, LookaheadSGD) and optimizer.total_steps == 12
    kernel = model.get_layer("logits").kernel

    def average():  # the optimizer's moving average of `kernel`
        return optimizer._model_variables_moving_average[optimizer._get_variable_index(kernel)].numpy()

    weights, averages = [], []  # after each step

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            weights.append(kernel.numpy())
            averages.append(average())

    trainer.fit(epochs=2, verbose=0, callbacks=[Record()], **kwargs)
    restarted = [bool(np.allclose(w, a)) for w, a in zip(weights, averages)]
    # Step 1 starts the average; steps 5 and 10 write it into the weights.
    assert restarted == [t in (1, 5, 10) for t in range(1, 13)]
    for t in (2, 3, 4, 7, 8, 9):  # steps that trained on from raw weights
        w, before, after = weights[t - 1], averages[t - 2], averages[t - 1]
        momentum = np.sum((after - w) * (before - w)) / np.sum((before - w) ** 2)
        assert momentum == pytest.approx(0.9 * ((t - 1) / 12) ** 0.6, rel=1e-3), t
    # The weights at the end are the average, and a checkpoint keeps the optimizer.
    np.testing.assert_allclose(kernel.numpy(), average())
    trainer.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras").optimizer
    assert isinstance(restored, LookaheadSGD)
    assert (restored.total_steps, restored.lookahead_momentum, restored.period) == (12, 0.9, 5)


def test_lookahead_momentum_stays_at_its_end_value_past_total_steps():
    # `fit` called again steps past `total_steps`: the ramp holds at
    # `lookahead_momentum` (unclamped, the momentum kept growing with the
    # steps, and once past 1 the average diverged).
    from keras_resnet.optimizers import LookaheadSGD

    optimizer = LookaheadSGD(total_steps=4, lookahead_momentum=0.5)
    weight = keras.Variable(np.full((2,), 3.0, "float32"))
    optimizer.build([weight])
    (average,) = optimizer._model_variables_moving_average
    average.assign(np.ones((2,), "float32"))
    optimizer.iterations.assign(8)  # twice total_steps
    optimizer._update_model_variables_moving_average([weight])
    np.testing.assert_allclose(average.numpy(), [2.0, 2.0])  # 0.5 * 1 + 0.5 * 3


def test_lookahead_restarts_from_the_average_every_period_steps():
    # The 12-step test above runs the default period of 5; another period
    # must be the one the weights restart at.
    from keras_resnet.optimizers import LookaheadSGD

    optimizer = LookaheadSGD(total_steps=100, period=3, learning_rate=0.1)
    weight = keras.Variable(np.zeros((2,), "float32"))
    optimizer.build([weight])
    (average,) = optimizer._model_variables_moving_average
    restarted = []
    for _ in range(7):
        optimizer.apply([np.ones((2,), "float32")], [weight])
        restarted.append(bool(np.allclose(weight.numpy(), average.numpy())))
    # Step 1 starts the average; steps 3 and 6 write it into the weight.
    assert restarted == [step in (1, 3, 6) for step in range(1, 8)]


def test_lookahead_arguments_are_checked():
    from keras_resnet.optimizers import LookaheadSGD
    from keras_resnet.optimizers import OffsetScaledSGD

    with pytest.raises(ValueError, match="`lookahead_momentum` must be a number in \\[0, 1\\). Received: lookahead_momentum=1.0"):
        LookaheadSGD(100, lookahead_momentum=1.0)
    with pytest.raises(ValueError, match="`total_steps` must be a positive integer. Received: total_steps=0"):
        LookaheadSGD(0)
    # Taken before: True steps, a period of True, an infinite scale; or a
    # TypeError from a comparison with a string.
    for call, received in [(lambda: LookaheadSGD(True), "total_steps=True"),
                           (lambda: LookaheadSGD(100, period=True), "period=True"),
                           (lambda: LookaheadSGD(100, lookahead_momentum="0.9"), "lookahead_momentum='0.9'"),
                           (lambda: OffsetScaledSGD(float("inf")), "offset_lr_scale=inf"),
                           # Dropped without a word before: the average kept its own settings.
                           (lambda: LookaheadSGD(100, ema_momentum=0.99), "ema_momentum=0.99"),
                           (lambda: LookaheadSGD(100, use_ema=False), "use_ema=False"),
                           (lambda: LookaheadSGD(100, ema_overwrite_frequency=10), "ema_overwrite_frequency=10")]:
        with pytest.raises(ValueError, match=f"Received: {received}$"):
            call()
    with pytest.raises(ValueError, match=r"a positive integer \(a Python value, not a NumPy scalar: pass `total_steps.item\(\)`\)"):
        LookaheadSGD(np.int64(100))
    with pytest.raises(ConfigError, match="--lookahead and --ema both average the weights; choose one."):
        TrainConfig(lookahead=0.95, ema=0.99).validate()


def test_offset_lr_scale_speeds_up_only_batch_norm_offsets(tmp_path):
    from keras_resnet.optimizers import LookaheadSGD, OffsetScaledSGD

    for optimizer in (OffsetScaledSGD(offset_lr_scale=64.0, learning_rate=0.01, momentum=0.9, nesterov=True),
                      LookaheadSGD(10, offset_lr_scale=64.0, learning_rate=0.01, momentum=0.9)):
        beta, kernel = keras.Variable(np.ones(3), name="beta"), keras.Variable(np.ones(3), name="kernel")
        optimizer.apply([np.full(3, 0.5), np.full(3, 0.5)], [beta, kernel])
        kernel_step, beta_step = 1 - kernel.numpy(), 1 - beta.numpy()
        assert kernel_step[0] > 0
        np.testing.assert_allclose(beta_step, 64 * kernel_step, rtol=1e-5)
    # compile_model passes the setting through, and a saved model keeps it.
    config = TrainConfig(epochs=1, batch_size=8, offset_lr_scale=16.0)
    model = build_model("seed", stage_filters=(8, 8, 8, 8))
    compile_model(model, config, steps_per_epoch=2)
    assert isinstance(model.optimizer, OffsetScaledSGD) and model.optimizer.offset_lr_scale == 16.0
    model.save(tmp_path / "m.keras")
    assert keras.saving.load_model(tmp_path / "m.keras").optimizer.offset_lr_scale == 16.0
    with pytest.raises(ValueError, match="`offset_lr_scale` must be a finite number > 0. Received: offset_lr_scale=0"):
        OffsetScaledSGD(offset_lr_scale=0)
    with pytest.raises(ConfigError, match="--offset-lr-scale must be positive \\(1 = off\\), got -1"):
        TrainConfig(offset_lr_scale=-1).validate()


SAME_AS_KERAS_WEIGHT_DECAY = """
import json
import keras, numpy as np
from keras_resnet.optimizers import OffsetScaledSGD
from keras_resnet.config import TrainConfig
from keras_resnet.training import learning_rate_schedule

calls = []

class CountedCosineDecay(keras.optimizers.schedules.CosineDecay):
    def __call__(self, step):
        calls.append(step)
        return super().__call__(step)

config = TrainConfig(epochs=2, warmup_epochs=1, batch_size=4)
schedule = learning_rate_schedule(config, steps_per_epoch=2).get_config()
x = np.random.default_rng(0).normal(size=(8, 8, 8, 3)).astype("float32")
y = keras.utils.to_categorical(np.arange(8) % 10, 10)
result = {}
for name, sgd in (("keras", keras.optimizers.SGD), ("ours", OffsetScaledSGD)):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3),
                              keras.layers.BatchNormalization(), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    optimizer = sgd(learning_rate=CountedCosineDecay.from_config(schedule), momentum=0.9,
                    nesterov=True, weight_decay=0.05)
    optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    model.compile(optimizer=optimizer, loss="categorical_crossentropy")
    calls.clear()
    model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    result[name] = {"calls": len(calls), "weights": [w.tolist() for w in model.get_weights()]}
print(json.dumps(result))
"""


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_weight_decay_is_keras_own_with_the_schedule_evaluated_once_per_step(backend):
    # Keras' decay read the learning rate once per decayed weight: the
    # schedule was traced 1 + 2 times per train step here (12 for `fast`).
    out = run_python(["-c", SAME_AS_KERAS_WEIGHT_DECAY], env={"KERAS_BACKEND": backend})
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    keras_own, ours = result["keras"], result["ours"]
    assert ours["calls"] >= 1 and keras_own["calls"] == 3 * ours["calls"], (keras_own["calls"], ours["calls"])
    for expected, actual in zip(keras_own["weights"], ours["weights"]):
        np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-7)


def test_another_stage_count_keeps_the_presets_first_stride():
    # Three stages on the seed preset (strides 1, 2, 2, 2): its first stage
    # keeps the stem's resolution, and each later one halves it. Striding
    # the first too would drop a resolution the preset never drops.
    config = TrainConfig(stage_filters=[8, 8, 8], stage_blocks=[1, 1, 1])
    assert config.model_overrides()["stage_strides"] == [1, 2, 2]
    model = build_model(config.preset, **config.model_overrides())
    sides = [model.get_layer(name).output.shape[1]
             for name in ("stem_relu", "stage1_block1", "stage2_block1", "stage3_block1")]
    assert sides == [16, 16, 8, 4]


def test_bn_momentum_overrides_the_presets():
    config = TrainConfig(preset="fast", bn_momentum=0.6)
    assert config.model_overrides() == {"bn_momentum": 0.6}
    model = build_model(config.preset, **config.model_overrides())
    momenta = {layer.momentum for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)}
    assert momenta == {0.6}
    for preset in ("seed", "fast"):  # the README's default: "preset's (0.9)"
        model = build_model(preset, **TrainConfig(preset=preset).model_overrides())
        assert {layer.momentum for layer in model._flatten_layers()
                if isinstance(layer, keras.layers.BatchNormalization)} == {0.9}
    with pytest.raises(ConfigError, match="--bn-momentum must be in \\[0, 1\\), got 1.0"):
        TrainConfig(bn_momentum=1.0).validate()


def test_averaged_weights_survive_an_evaluate_and_a_save_on_jax(tmp_path):
    # Keras gave each weight its average's array at the end of `fit`; the
    # JAX `evaluate` after it donated that array, and saving the optimizer
    # failed with "Array has been deleted" (train.py with --ema or
    # --lookahead on JAX).
    script = """if True:
        import sys, numpy as np, keras
        from keras_resnet.optimizers import LookaheadSGD, OffsetScaledSGD
        x, y = np.random.rand(32, 4).astype("float32"), np.random.rand(32, 2).astype("float32")
        for optimizer in (OffsetScaledSGD(use_ema=True, ema_momentum=0.5), LookaheadSGD(4, 0.5)):
            model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
            model.compile(optimizer=optimizer, loss="mse")
            model.fit(x, y, batch_size=8, epochs=1, verbose=0)
            model.evaluate(x, y, verbose=0)
            model.save(f"{sys.argv[1]}/{type(optimizer).__name__}.keras")
        print(keras.backend.backend())
    """
    out = run_python(["-c", script, str(tmp_path)], env={"KERAS_BACKEND": "jax"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["jax"]
    assert sorted(os.listdir(tmp_path)) == ["LookaheadSGD.keras", "OffsetScaledSGD.keras"]


def test_validation_run_reports_the_final_ema_weights_on_its_split_not_the_test_set(
        real_data_dir, tmp_path, capsys):
    from tests.conftest import run_train_main

    run_dir = tmp_path / "run"
    code, _, err = run_train_main(
        ["--epochs", "2", "--batch-size", "50", "--train-size", "400", "--validation-size", "100",
         "--ema", "0.5", "--stage-filters", "16,16,16,16", "--data-dir", real_data_dir,
         "--no-export", "--output-dir", str(run_dir)], capsys)
    assert code == 0, err[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    cifar = data.load_cifar10(real_data_dir)
    _, _, x_val, y_val = data.split_validation(cifar.x_train[:400], cifar.y_train[:400], 100, 0)
    model = keras.saving.load_model(str(run_dir / "model.keras"))
    probabilities = model.predict(x_val.astype("float32"), batch_size=50, verbose=0)  # as the run
    assert metrics["val_accuracy"] == pytest.approx(np.mean(np.argmax(probabilities, -1) == y_val))
    # Flip TTA (the default --tta-views): the mean probabilities of each image and its mirror.
    mirrored = model.predict(x_val[:, :, ::-1].astype("float32"), batch_size=50, verbose=0)
    tta = np.argmax(probabilities + mirrored, -1)
    assert metrics["val_accuracy_tta"] == pytest.approx(np.mean(tta == y_val))
    assert set(metrics["val_per_class_accuracy"]) == set(cifar.class_names)
    # A validation run chooses settings, so it never looks at the test set.
    assert not [key for key in metrics if key.startswith("test_") or key == "per_class_accuracy"]


def test_ema_too_slow_for_the_run_is_refused():
    from keras_resnet.training import check_ema_horizon

    check_ema_horizon(TrainConfig(ema=0.999), total_steps=5000)  # 0.7% left: fine
    with pytest.raises(ConfigError, match=r"--ema 0.999 averages over about 1000 steps, too many "
                                          r"for this run's 880: .* 41% .* Use --ema 0.994 or lower"):
        check_ema_horizon(TrainConfig(ema=0.999), total_steps=880)
    with pytest.raises(ConfigError, match=r"^--ema 0.1 averages over about 1 step, too many "):
        check_ema_horizon(TrainConfig(ema=0.1), total_steps=1)  # said "about 1 steps"
    # The value it suggests passes (0.1 was suggested for 2 steps, and refused).
    for steps in (1, 2, 3, 4, 10, 50, 880, 5000):
        with pytest.raises(ConfigError) as refused:
            check_ema_horizon(TrainConfig(ema=0.9999), total_steps=steps)
        suggested = float(re.search(r"Use --ema ([0-9.]+) or lower", str(refused.value))[1])
        check_ema_horizon(TrainConfig(ema=suggested), total_steps=steps)


def test_a_batch_of_every_training_image_is_taken_and_a_larger_one_refused(fake_cifar):
    from keras_resnet.training import check_batch_fits
    from keras_resnet.training import prepare_data

    check_batch_fits(TrainConfig(batch_size=40), 40)  # one whole batch an epoch
    with pytest.raises(ConfigError, match=r"^--batch-size 41 is larger than the 40 training images\.$"):
        check_batch_fits(TrainConfig(batch_size=41), 40)
    # The 100 images less a validation split: the line names the split (it
    # said "the 20 training images" to a user who had passed no such size).
    with pytest.raises(ConfigError, match=r"^--batch-size 25 is larger than the 20 training images "
                                          r"that --validation-size 80 leaves\.$"):
        prepare_data(TrainConfig(data_dir=fake_cifar, batch_size=25, validation_size=80))


def test_the_seed_seeds_the_augmentation():
    # --seed "seeds weights, order, augmentation and the validation split".
    from keras_resnet.training import training_augmenter

    x = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3)).astype("float32")
    crops = [keras.ops.convert_to_numpy(training_augmenter(TrainConfig(seed=seed, cutout=8))(x, training=True))
             for seed in (0, 0, 1)]
    np.testing.assert_array_equal(crops[0], crops[1])
    assert not np.array_equal(crops[0], crops[2])


def test_the_seed_draws_the_initial_weights(fake_cifar, tmp_path, monkeypatch):
    from keras_resnet import training

    class Built(Exception):
        pass

    kernels = []

    def build_and_stop(config, **kwargs):  # the network as `train` builds it, before any step
        kernels.append(build_network(config, **kwargs).get_layer("logits").get_weights()[0])
        raise Built

    build_network = training.build_network
    monkeypatch.setattr(training, "build_network", build_and_stop)
    for run, seed in enumerate((0, 1, 1)):
        with pytest.raises(Built):
            training.train(TrainConfig(epochs=1, batch_size=20, stage_filters=[8, 8, 8, 8], data_dir=fake_cifar,
                                       seed=seed, output_dir=str(tmp_path / str(run)), export=False))
    np.testing.assert_array_equal(kernels[1], kernels[2])
    assert not np.array_equal(kernels[0], kernels[1])


@pytest.mark.parametrize("tta_views, views", [("flip", 2), ("flip-shift", 6)])
def test_held_out_tta_accuracy_predicts_the_views_of_tta_views(tta_views, views):
    from keras_resnet.training import evaluate_held_out

    class CountingClassifier:
        shown = 0

        def predict(self, images, batch_size=None, verbose=0):
            self.shown += 1
            return np.full((len(images), 10), 0.1, "float32")

    model = CountingClassifier()
    metrics = evaluate_held_out(model, np.zeros((4, 32, 32, 3), "uint8"), np.arange(4), 4, data.CLASS_NAMES,
                                tta_views, prefix="val")
    assert model.shown == views  # the images, then each view of them
    assert set(metrics) == {"val_loss", "val_accuracy", "val_accuracy_tta", "val_per_class_accuracy"}


def test_device_input_validates_in_whole_training_batches(real_cifar):
    class CountValidationBatches(keras.callbacks.Callback):
        def on_test_begin(self, logs=None):
            self.batches = 0

        def on_test_batch_end(self, batch, logs=None):
            self.batches += 1

    x, y = real_cifar.x_train[:300], real_cifar.y_train[:300]
    config = TrainConfig(epochs=1, batch_size=50, augment_on="device", warmup_epochs=0)
    model = build_model("seed", stage_filters=(8, 8, 8, 8))
    trainer, steps, kwargs = fit_inputs(model, config, (x[:200], y[:200]), (x[200:], y[200:]))
    compile_model(trainer, config, steps)
    counter = CountValidationBatches()
    trainer.fit(epochs=1, verbose=0, callbacks=[counter], **kwargs)
    assert steps == 4 and counter.batches == 2  # 100 images at 50, not Keras' default 32


def test_train_fits_the_whitening_stem_to_its_training_images(fake_cifar, tmp_path, monkeypatch):
    from keras_resnet.layers import PatchWhitening
    from keras_resnet.training import train

    from keras_resnet import training

    config = TrainConfig(preset="fast-cpu", epochs=1, batch_size=20, stage_filters=[8, 8, 16, 16],
                         validation_size=20, data_dir=fake_cifar, output_dir=str(tmp_path / "run"),
                         export=False, tta_views="flip-shift")
    monitors = []
    make_callbacks = training.make_callbacks
    monkeypatch.setattr(training, "make_callbacks", lambda config, run_dir, monitor: (
        monitors.append(monitor) or make_callbacks(config, run_dir, monitor)))
    metrics = train(config)
    assert monitors == ["val_accuracy"]  # the best checkpoint and the target watch the split
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved == metrics
    assert (metrics["train_images"], metrics["epochs"], metrics["tta_views"], metrics["augment_on"]) == (
        80, 1, "flip-shift", "host")
    assert (metrics["resumed_after_epoch"], metrics["export_path"], metrics["run_dir"]) == (
        None, None, str(tmp_path / "run"))
    model = keras.saving.load_model(str(tmp_path / "run" / "model.keras"))
    stem = model.get_layer("stem_whitening")
    # The training split's images (not the validation split's), normalized
    # as the stem receives them; the kernel is not changed by training.
    cifar = data.load_cifar10(fake_cifar)
    x_train, _, _, _ = data.split_validation(cifar.x_train, cifar.y_train, 20, config.seed)
    expected = PatchWhitening(stem.kernel_size)
    expected.adapt(keras.ops.convert_to_numpy(model.get_layer("normalize")(x_train)))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(stem.kernel),
                               keras.ops.convert_to_numpy(expected.kernel), rtol=1e-4, atol=1e-4)


def test_build_network_leaves_the_callers_dtype_policy_as_it_was():
    # It reset the global policy to float32 afterwards, whatever it had been.
    from keras_resnet.training import build_network

    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = build_network(TrainConfig(preset="seed", stage_filters=[8, 8, 8, 8], precision="mixed_bfloat16"))
        assert model.get_layer("stem_conv").dtype_policy.name == "mixed_bfloat16"
        assert keras.config.dtype_policy().name == "mixed_float16"
    finally:
        keras.config.set_dtype_policy("float32")


def test_runs_under_a_callers_mixed_policy_build_all_but_the_network_float32(
        fake_cifar, tmp_path, monkeypatch):
    # Once build_network gave the caller's policy back, the training wrapper
    # (and, for mixed_float16, the loss scaling `compile` adds) took it.
    from keras_resnet import bench, tune
    from keras_resnet.training import train

    compiled = []
    compile_ = keras.Model.compile

    def recording_compile(self, *args, **kwargs):
        compiled.append(self.dtype_policy.name)
        return compile_(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "compile", recording_compile)
    config = TrainConfig(preset="fast-cpu", epochs=1, batch_size=20, stage_filters=[8, 8, 16, 16],
                         validation_size=20, data_dir=fake_cifar, augment_on="device", export=False)
    keras.config.set_dtype_policy("mixed_float16")
    try:
        train(dataclasses.replace(config, output_dir=str(tmp_path / "run")))
        tune.search(config, tuner="random", max_trials=1, epochs_per_trial=1, directory=str(tmp_path / "tune"),
                    widths=[[8], [8], [16], [16]], blocks=[1], verbose=0)
        cifar = data.load_cifar10(fake_cifar)
        bench.bench_pipeline_training(config, cifar.x_train, cifar.y_train, steps=1, repeats=1)
        assert keras.config.dtype_policy().name == "mixed_float16"
    finally:
        keras.config.set_dtype_policy("float32")
    # (`compile` wraps the optimizer in loss scaling for a mixed_float16 model.)
    assert len(compiled) == 3 and set(compiled) == {"float32"}, compiled


def test_train_leaves_the_callers_config_alone(fake_cifar, tmp_path, monkeypatch):
    # It wrote the folder it chose into `config.output_dir`: the same config
    # trained again went back to the first, finished run.
    from keras_resnet.training import train

    monkeypatch.chdir(tmp_path)
    config = TrainConfig(preset="fast-cpu", epochs=1, batch_size=20, stage_filters=[8, 8, 16, 16],
                         data_dir=fake_cifar, export=False)
    first, second = train(config)["run_dir"], train(config)["run_dir"]
    assert config.output_dir is None
    assert (first, second) == (os.path.join("runs", "fast-cpu"), os.path.join("runs", "fast-cpu-2"))
    assert (tmp_path / first / "metrics.json").is_file() and (tmp_path / second / "metrics.json").is_file()


def test_a_failed_jax_data_parallel_train_leaves_no_distribution_behind(tmp_path):
    # `--distribute` sets Keras' global distribution; a train that then
    # failed left it set for whatever the process did next.
    from tests.conftest import write_fake_cifar

    cifar = write_fake_cifar(str(tmp_path / "cifar"))
    with open(os.path.join(cifar, "data_batch_3"), "wb") as f:
        f.write(b"not a pickle")  # found by the settings' checks, read after the distribution is set
    script = r"""
import sys, keras
from keras_resnet.config import TrainConfig
from keras_resnet.data import DataError
from keras_resnet.training import train
try:
    train(TrainConfig(distribute=True, batch_size=64, data_dir=sys.argv[1], output_dir=sys.argv[2]))
except DataError as e:
    print("refused:", e)
print("distribution:", keras.distribution.distribution())
"""
    out = run_python(["-c", script, cifar, str(tmp_path / "run")],
                     env={"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("refused:") and lines[-1] == "distribution: None"


@pytest.mark.parametrize("cut, train_images", [({"validation_size": 20}, 80), ({"train_size": 40}, 40)])
def test_a_cut_training_set_does_not_keep_the_whole_loaded_one_alive(fake_cifar, cut, train_images,
                                                                      monkeypatch):
    # With --validation-size or --train-size the run trains on a part of the
    # loaded images; the whole array (150 MB of CIFAR-10) stayed alive beside
    # that part through the run, in the returned tuple or as a slice's base.
    import gc
    import weakref

    from keras_resnet import training

    reloaded = data.load_cifar10(fake_cifar)  # to compare with, apart from the one the run loads
    loaded = [data.load_cifar10(fake_cifar)]
    whole = weakref.ref(loaded[0].x_train)
    monkeypatch.setattr(data, "load_cifar10", lambda data_dir=None: loaded.pop())
    cifar, (x, y), _ = training.prepare_data(TrainConfig(batch_size=10, data_dir=fake_cifar, seed=3, **cut))
    gc.collect()
    assert whole() is None
    assert x.shape == (train_images, 32, 32, 3) and y.shape == (train_images,)
    # Which images: the first N of --train-size, or those --seed's split leaves.
    if "train_size" in cut:
        expected = reloaded.x_train[:train_images], reloaded.y_train[:train_images]
    else:
        expected = data.split_validation(reloaded.x_train, reloaded.y_train, cut["validation_size"], seed=3)[:2]
    np.testing.assert_array_equal(x, expected[0])
    np.testing.assert_array_equal(y, expected[1])
    assert cifar.x_test.shape == (20, 32, 32, 3) and len(cifar.class_names) == 10
