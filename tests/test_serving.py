"""The TF Serving contract of an export, and `python -m keras_resnet.predict`.

The TF Serving binary cannot be installed here, so the REST tests do what
`tensorflow_model_server` does with a predict request (after
tensorflow_serving/util/json_tensor.cc): a JSON body in the documented row
(`instances`) or column (`inputs`) format becomes tensors of the signature's
input dtypes, runs through the signature of the SavedModel loaded with
`tf.saved_model.load` in a fresh process without this project on its path,
and the outputs are written back as `predictions` (row) or `outputs`
(column), floats formatted as the server formats them.
"""

import importlib.util
import json
import os
import re
import struct
import subprocess
import sys
import textwrap
import types
import zlib

import numpy as np
import pytest
from PIL import Image

from tests.conftest import call_main
from tests.conftest import run_python
from tests.test_export import real_test_images
from tests.test_export import run_isolated
from tests.test_export import train_tiny_model

# TensorFlow's native start-up lines (absl format), printed on stderr when it
# loads, whatever TF_CPP_MIN_LOG_LEVEL says.
TF_LOG_LINE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\)"
    r"|[IWEF]\d{4} \d\d:\d\d:[\d.]+ +\d+ [\w.]+:\d+\]"
    r"|To enable the following instructions:)"
)

# A REST predict, as tensorflow_model_server answers it, for request bodies
# read from files: `python -c TF_SERVING_REST VERSION_DIR REQUEST RESPONSE...`.
TF_SERVING_REST = textwrap.dedent('''
    import importlib.util, json, sys
    assert importlib.util.find_spec("keras_resnet") is None, sys.path
    import numpy as np
    import tensorflow as tf

    def decimal(v):
        # WriteDecimal: "%g", or "%.9g" when "%g" does not round-trip.
        s = "%g" % v
        if np.float32(s) != v:
            s = "%.9g" % v
        return s if ("." in s or "e" in s) else s + ".0"

    def to_json(value, level=0):
        # Pretty-printed, 4 spaces, arrays of numbers on one line.
        pad = "    " * (level + 1)
        if isinstance(value, dict):
            items = [f"{pad}{json.dumps(k)}: {to_json(v, level + 1)}"
                     for k, v in value.items()]
            return "{\\n" + ",\\n".join(items) + "\\n" + "    " * level + "}"
        if isinstance(value, list):
            items = [pad + to_json(v, level + 1) for v in value]
            return "[\\n" + ",\\n".join(items) + "\\n" + "    " * level + "]"
        if isinstance(value, str):
            return json.dumps(value)
        value = np.asarray(value)
        if value.ndim:
            return "[" + ", ".join(to_json(v) for v in value) + "]"
        return decimal(value) if value.dtype.kind == "f" else str(int(value))

    def predict(loaded, body):
        request = json.loads(body)  # like the server, accepts NaN/Infinity
        name = request.get("signature_name") or "serving_default"
        if name not in loaded.signatures:
            return {"error": f'Serving signature key "{name}" not found.'}
        signature = loaded.signatures[name]
        specs = signature.structured_input_signature[1]
        if not specs:
            return {"error": f"Failed to get input map for signature: {name}"}
        if ("instances" in request) == ("inputs" in request):
            return {"error": "Missing 'inputs' or 'instances' key"}
        rows = "instances" in request
        data = request["instances"] if rows else request["inputs"]
        if rows and isinstance(data[0], dict):
            data = {k: [row[k] for row in data] for k in data[0]}
        elif not isinstance(data, dict):
            data = {next(iter(specs)): data}
        if set(data) != set(specs):
            return {"error": f"inputs {sorted(data)} != signature inputs {sorted(specs)}"}
        try:
            tensors = {k: tf.constant(np.asarray(v, specs[k].dtype.as_numpy_dtype))
                       for k, v in data.items()}
            outputs = {k: v.numpy() for k, v in sorted(signature(**tensors).items())}
        except (tf.errors.OpError, ValueError, TypeError) as e:
            return {"error": getattr(e, "message", str(e))}
        if not rows:
            return {"outputs": outputs if len(outputs) > 1 else next(iter(outputs.values()))}
        count = len(next(iter(outputs.values())))
        if len(outputs) == 1:
            return {"predictions": list(next(iter(outputs.values())))}
        return {"predictions": [{k: v[i] for k, v in outputs.items()} for i in range(count)]}

    loaded = tf.saved_model.load(sys.argv[1])
    for request_path, response_path in zip(sys.argv[2::2], sys.argv[3::2]):
        with open(request_path) as f:
            response = predict(loaded, f.read())
        with open(response_path, "w") as f:
            f.write(to_json(response) + "\\n")
''')

REST_REQUESTS = ("row", "row_unnamed", "column", "wrong_shape", "class_names")


def stderr_lines(stderr):
    """stderr without TensorFlow's native start-up lines."""
    return [line for line in stderr.splitlines() if line and not TF_LOG_LINE.match(line)]


def write_png_bomb(path, side=20000):
    """A 1-bit black PNG: 48 KB on disk, side * side pixels once decoded."""
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def served(real_data_dir, tmp_path_factory):
    """A tiny trained model, its export (versions 1 and 2), a `.keras`
    checkpoint, 16 real test images (every class) and the Keras model's
    probabilities for them."""
    from keras_resnet.export import export_saved_model

    root = tmp_path_factory.mktemp("served")
    model = train_tiny_model(real_data_dir)
    images, _ = real_test_images(real_data_dir, 16)
    version_1 = export_saved_model(model, str(root / "saved_models"))
    version_2 = export_saved_model(model, str(root / "saved_models"))
    model.save(root / "tiny.keras")
    return types.SimpleNamespace(
        model=model,
        root=root,
        model_dir=str(root / "saved_models" / "keras_resnet"),
        version_1=version_1,
        version_dir=version_2,
        keras_path=str(root / "tiny.keras"),
        images=images,
        probabilities=model.predict(images.astype("float32"), verbose=0),
    )


@pytest.fixture(scope="module")
def rest(served, tmp_path_factory):
    """Request bodies and the emulated server's responses, by name."""
    folder = tmp_path_factory.mktemp("rest")
    pixels = served.images.tolist()  # uint8 -> JSON integers, as clients send
    small = np.zeros((1, 28, 28, 3), np.uint8).tolist()
    bodies = {
        "row": {"signature_name": "serving_default",
                "instances": [{"images": image} for image in pixels[:8]]},
        "row_unnamed": {"instances": pixels[:2]},
        "column": {"signature_name": "serving_default",
                   "inputs": {"images": pixels[:8]}},
        "wrong_shape": {"instances": [{"images": small[0]}]},
        "class_names": {"signature_name": "class_names", "inputs": {}},
    }
    args = []
    for name in REST_REQUESTS:
        (folder / f"{name}.json").write_text(json.dumps(bodies[name]))
        args += [folder / f"{name}.json", folder / f"{name}.response.json"]
    scratch = folder / "scratch"
    scratch.mkdir()
    out = run_isolated(TF_SERVING_REST, [served.version_dir, *args], cwd=scratch)
    assert out.returncode == 0, out.stderr[-3000:]
    texts = {n: (folder / f"{n}.response.json").read_text() for n in REST_REQUESTS}
    return types.SimpleNamespace(
        bodies=bodies, texts=texts,
        responses={n: json.loads(t) for n, t in texts.items()},
    )


def check_against_keras(served, probabilities, class_ids):
    probabilities = np.asarray(probabilities, dtype=np.float64)
    count = len(probabilities)
    assert probabilities.shape == (count, 10)
    assert all(isinstance(c, int) for c in class_ids)
    np.testing.assert_allclose(
        probabilities, served.probabilities[:count], rtol=0, atol=1e-4
    )
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(class_ids, probabilities.argmax(axis=1))


def test_rest_row_format(served, rest):
    response = rest.responses["row"]
    assert list(response) == ["predictions"]
    predictions = response["predictions"]
    assert len(predictions) == 8
    assert all(set(p) == {"probabilities", "class_ids"} for p in predictions)
    check_against_keras(
        served,
        [p["probabilities"] for p in predictions],
        [p["class_ids"] for p in predictions],
    )
    # The server's layout: pretty-printed, each array on one line.
    assert rest.texts["row"].startswith('{\n    "predictions": [\n        {\n')
    assert re.search(r'\n            "class_ids": \d,\n', rest.texts["row"])


def test_rest_row_format_with_unnamed_instances(served, rest):
    # One named input: `instances` may list the values themselves. A batch
    # of 2 may round differently from the batch of 8 in the last float32
    # digit (CPU kernels block their work by batch size; seen on an AVX2
    # CPU), so the probabilities are compared to float32 precision.
    unnamed = rest.responses["row_unnamed"]["predictions"]
    named = rest.responses["row"]["predictions"][:2]
    assert [set(p) for p in unnamed] == [{"probabilities", "class_ids"}] * 2
    assert [p["class_ids"] for p in unnamed] == [p["class_ids"] for p in named]
    np.testing.assert_allclose([p["probabilities"] for p in unnamed],
                               [p["probabilities"] for p in named], rtol=1e-6, atol=0)


def test_rest_column_format(served, rest):
    response = rest.responses["column"]
    assert list(response) == ["outputs"]
    outputs = response["outputs"]
    assert set(outputs) == {"probabilities", "class_ids"}
    check_against_keras(served, outputs["probabilities"], outputs["class_ids"])
    rows = rest.responses["row"]["predictions"]
    assert outputs["class_ids"] == [p["class_ids"] for p in rows]
    assert outputs["probabilities"] == [p["probabilities"] for p in rows]


def test_rest_wrong_shape_is_a_clear_error(rest):
    assert rest.responses["wrong_shape"] == {"error": rest.responses["wrong_shape"]["error"]}
    assert (
        "Shape of tensor images [1,28,28,3] is not compatible with expected "
        "shape [?,32,32,3]." in rest.responses["wrong_shape"]["error"]
    )


def test_rest_cannot_call_the_input_less_class_names_signature(rest):
    # The REST API needs at least one input: class names come by gRPC (or
    # assets.extra/class_names.txt), not REST.
    assert rest.responses["class_names"] == {
        "error": "Failed to get input map for signature: class_names"
    }


def test_saved_model_cli_show(served):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    out = subprocess.run(
        [cli, "show", "--dir", served.version_dir, "--tag_set", "serve",
         "--signature_def", "serving_default"],
        capture_output=True, text=True, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    tensors = re.findall(
        r"(inputs|outputs)\['(\w+)'\] tensor_info:\s+dtype: (\w+)\s+shape: (\([^)]*\))",
        out.stdout,
    )
    assert sorted(tensors) == [
        ("inputs", "images", "DT_FLOAT", "(-1, 32, 32, 3)"),
        ("outputs", "class_ids", "DT_INT64", "(-1)"),
        ("outputs", "probabilities", "DT_FLOAT", "(-1, 10)"),
    ]
    assert "Method name is: tensorflow/serving/predict" in out.stdout


@pytest.fixture(scope="module")
def loaded(served):
    import tensorflow as tf

    return tf.saved_model.load(served.version_dir)


@pytest.mark.parametrize(
    "dtype, shape, error",
    [
        ("int32", (2, 32, 32, 3), "expected to be a float tensor but is a int32 tensor"),
        ("float64", (2, 32, 32, 3), "expected to be a float tensor but is a double tensor"),
        ("float32", (2, 28, 28, 3),
         "Shape of tensor images [2,28,28,3] is not compatible with expected shape [?,32,32,3]"),
        ("float32", (32, 32, 3),
         "Shape of tensor images [32,32,3] is not compatible with expected shape [?,32,32,3]"),
        ("float32", (1, 32, 32, 1),
         "Shape of tensor images [1,32,32,1] is not compatible with expected shape [?,32,32,3]"),
    ],
)
def test_signature_rejects_wrong_dtype_or_shape(loaded, dtype, shape, error):
    import tensorflow as tf

    serve = loaded.signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(error)):
        serve(images=tf.zeros(shape, dtype))


def test_a_classifier_checks_its_images_before_the_model_gets_them(served):
    # Once a .keras model had predicted 32x32 images, Keras retraced it for
    # 28x28 or one-channel ones and classified them without a word; an empty
    # batch died in Keras' UnboundLocalError; a SavedModel raised TensorFlow's
    # InvalidArgumentError from tf.ensure_shape.
    from keras_resnet.classifier import load_classifier

    for path in (served.keras_path, served.version_dir):
        classifier, kind = load_classifier(path)
        np.testing.assert_allclose(classifier.predict(served.images[:2].astype("float32")),
                                   served.probabilities[:2],
                                   atol=1e-4, err_msg=kind)
        for shape in ((2, 28, 28, 3), (2, 32, 32, 1), (32, 32, 3), (2, 3, 32, 32)):
            with pytest.raises(ValueError) as info:
                classifier.predict(np.zeros(shape, "float32"))
            assert str(info.value) == ("`images` must be a batch of 32x32 RGB images, shape "
                                       f"(N, 32, 32, 3). Received: shape {shape}"), kind
        empty = classifier.predict(np.zeros((0, 32, 32, 3), "uint8"), batch_size=4)
        assert (empty.shape, empty.dtype) == ((0, 10), np.float32), kind
        # Not arrays at all: NumPy's TypeError ("float() argument must be...").
        for images, name in (([[1, 2], [3]], "list"), ("cat.png", "str"), (object(), "object")):
            with pytest.raises(ValueError, match=r"^`images` must be a batch of 32x32 RGB images, "
                                                 rf"shape \(N, 32, 32, 3\), as an array. Received: {name}$"):
                classifier.predict(images)


def test_the_highest_version_is_the_highest_number(tmp_path):
    # Sorted as names, "9" comes after "10".
    from keras_resnet.classifier import resolve_saved_model

    for version in ("9", "10"):
        (tmp_path / "m" / version).mkdir(parents=True)
        (tmp_path / "m" / version / "saved_model.pb").write_bytes(b"")
    assert resolve_saved_model(str(tmp_path / "m")) == str(tmp_path / "m" / "10")


def save_serving_module(path, row):
    """A SavedModel whose serving_default gives every image the outputs `row`."""
    import tensorflow as tf

    module = tf.Module()
    module.serve = tf.function(
        lambda images: {"probabilities": tf.tile(tf.constant([row], tf.float32),
                                                 [tf.shape(images)[0], 1])},
        input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32, name="images")])
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return str(path)


def test_a_saved_model_of_another_number_of_classes_is_refused(tmp_path):
    from keras_resnet.classifier import ModelError
    from keras_resnet.classifier import load_classifier

    path = save_serving_module(tmp_path / "eleven", [1 / 11] * 11)
    with pytest.raises(ModelError) as info:
        load_classifier(path)
    assert str(info.value) == (f"{path} is not a CIFAR-10 classifier: serving_default maps "
                               "(None, 32, 32, 3) to (None, 11), expected (None, 32, 32, 3) to (None, 10).")


def test_a_saved_model_with_a_negative_output_is_refused(tmp_path):
    # Outputs that sum to 1 but hold a negative value are no probabilities
    # (the refusal read "sum to 1, not 1").
    from keras_resnet.classifier import ModelError
    from keras_resnet.classifier import load_classifier

    path = save_serving_module(tmp_path / "negative", [-0.5, 1.5] + [0.0] * 8)
    with pytest.raises(ModelError) as info:
        load_classifier(path)
    assert str(info.value) == (f"{path} does not output class probabilities (one image's outputs "
                               "include -0.5, below 0): export a model that ends with a softmax, "
                               "as build_model's does.")


# === python -m keras_resnet.predict ===


@pytest.fixture(scope="module")
def image_files(served, tmp_path_factory):
    """Real test images as 32x32 PNGs, and other sizes and modes."""
    folder = tmp_path_factory.mktemp("images")
    real = []
    for i, image in enumerate(served.images[:4]):
        real.append(str(folder / f"test_{i}.png"))
        Image.fromarray(image).save(real[-1])
    source = Image.fromarray(served.images[4])
    rgba = source.resize((96, 96), Image.Resampling.NEAREST).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((96, 96)))
    paths = dict(
        rgba=str(folder / "rgba.png"),
        gray=str(folder / "gray.png"),
        palette=str(folder / "palette.png"),
        large_jpeg=str(folder / "large.jpg"),
    )
    rgba.save(paths["rgba"])
    source.convert("L").resize((50, 40)).save(paths["gray"])
    source.convert("P", palette=Image.Palette.ADAPTIVE).save(paths["palette"])
    source.resize((1600, 1200), Image.Resampling.BICUBIC).save(
        paths["large_jpeg"], quality=90
    )
    for name, mode in (("rgba", "RGBA"), ("gray", "L"), ("palette", "P")):
        assert Image.open(paths[name]).mode == mode
    return types.SimpleNamespace(folder=folder, real=real, **paths)


def test_predict_cli_on_real_and_converted_images(served, image_files):
    from keras_resnet.data import CLASS_NAMES
    from keras_resnet.predict import load_image

    converted = [image_files.rgba, image_files.gray, image_files.palette,
                 image_files.large_jpeg]
    out = run_python(["-m", "keras_resnet.predict", "--model", served.model_dir,
                      *image_files.real, *converted, "--top-k", "3"])
    assert out.returncode == 0, out.stderr[-3000:]
    assert stderr_lines(out.stderr) == []
    *table, last = out.stdout.strip().splitlines()
    result = json.loads(last)
    assert result["model"] == served.model_dir
    assert [p["image"] for p in result["predictions"]] == image_files.real + converted
    # One table per image: its path, a header, k rows.
    assert len(table) == 8 * 5 and table[0] == image_files.real[0]
    assert table[1].split() == ["rank", "class", "probability"]

    expected = np.concatenate([
        served.probabilities[:4],
        served.model.predict(
            np.stack([load_image(p) for p in converted]).astype("float32"), verbose=0
        ),
    ])
    for prediction, row in zip(result["predictions"], expected):
        top = prediction["top_k"]
        assert [t["class_id"] for t in top] == list(np.argsort(-row)[:3])
        np.testing.assert_allclose(
            [t["probability"] for t in top], np.sort(row)[::-1][:3], atol=1e-4
        )
        assert [t["class_name"] for t in top] == [CLASS_NAMES[t["class_id"]] for t in top]
        rank_1 = f"{1:>6}  {top[0]['class_name']:<12}{top[0]['probability']:>11.4f}"
        assert rank_1 in table


# Runs predict's main and, as TensorFlow starts to load, prints the
# TF_CPP_MIN_LOG_LEVEL TensorFlow will read and ends the process (what follows
# is the prediction the other tests check).
LOG_LEVEL_AT_TF_IMPORT = textwrap.dedent('''
    import importlib.abc, os, sys

    class TensorFlowImport(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "tensorflow":
                print("TF_CPP_MIN_LOG_LEVEL", os.environ.get("TF_CPP_MIN_LOG_LEVEL"), flush=True)
                os._exit(0)

    sys.meta_path.insert(0, TensorFlowImport())
    from keras_resnet import predict
    sys.exit(predict.main(sys.argv[1:]))
''')


def test_predict_hides_the_tensorflow_info_lines_the_other_commands_hide(served, image_files):
    # train.py, evaluate, export, tune and bench set TF_CPP_MIN_LOG_LEVEL=2
    # unless the user set it; predict did not, and printed TensorFlow's
    # "This TensorFlow binary is optimized to use available CPU instructions
    # ... To enable the following instructions: AVX2 FMA, ..." above its table.
    # Which lines TensorFlow prints depends on the machine (none on some), so
    # the test reads the level TensorFlow starts with, not its lines.
    args = ["-c", LOG_LEVEL_AT_TF_IMPORT, "--model", served.model_dir, image_files.real[0]]
    for level, expected in ((None, "2"), ("0", "0")):  # the user's own level is kept
        out = run_python(args, env={"TF_CPP_MIN_LOG_LEVEL": level})
        assert out.returncode == 0, out.stderr[-3000:]
        assert out.stdout == f"TF_CPP_MIN_LOG_LEVEL {expected}\n", (level, out.stdout, out.stderr[-3000:])


@pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                    reason="PyTorch is not installed (requirements-dev.txt leaves it out): "
                           "pip install torch to test KERAS_BACKEND=torch")
@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_a_saved_model_is_read_on_the_torch_backend(served, image_files, real_data_dir, tmp_path, command):
    # A shell set for PyTorch training: the SavedModel loads in TensorFlow,
    # and Keras (torch) loads after it. With the CUDA wheels of torch,
    # which bring triton, that crashed the process (SIGSEGV, no message):
    # TensorFlow >= 2.20 loads its LLVM globally, and triton's, loaded
    # after it by Keras' `import torch._dynamo`, binds to it
    # (tensorflow/tensorflow#124205). Without triton (the CPU wheels) this
    # passes either way.
    args = ["--model", served.model_dir]
    if command == "predict":
        args += image_files.real
    else:
        args += ["--data-dir", real_data_dir, "--output-dir", str(tmp_path / "report"),
                 "--mistakes", "0"]
    out = run_python(["-m", f"keras_resnet.{command}", *args], env={"KERAS_BACKEND": "torch"})
    assert out.returncode == 0, (out.returncode, out.stderr[-3000:])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if command == "predict":
        for prediction, row in zip(result["predictions"], served.probabilities):
            top = prediction["top_k"]
            assert [t["class_id"] for t in top] == list(np.argsort(-row)[:3])
            np.testing.assert_allclose([t["probability"] for t in top], np.sort(row)[::-1][:3],
                                       atol=1e-4)
    else:
        assert result["format"] == "saved_model" and result["test_images"] == 10000


def test_predict_keras_file_and_version_folder(served, image_files, capsys):
    from keras_resnet.predict import main

    results = {}
    # More than the 10 classes: all of them (predict() itself refuses top_k=11).
    for name, model, k in (("version_1", served.version_1, "10"), ("keras", served.keras_path, "20")):
        assert main(["--model", model, *image_files.real, "--top-k", k]) == 0
        results[name] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for name, result in results.items():
        for prediction, row in zip(result["predictions"], served.probabilities):
            top = prediction["top_k"]
            assert len(top) == 10
            # Each the shortest decimal of its float32, not float64's 17 digits.
            assert all(t["probability"] == float(str(np.float32(t["probability"]))) for t in top)
            probabilities = np.zeros(10)
            probabilities[[t["class_id"] for t in top]] = [t["probability"] for t in top]
            np.testing.assert_allclose(probabilities, row, atol=1e-4, err_msg=name)


def test_the_predict_api_names_a_bad_argument(served):
    # A bare IndexError (9 names), a top-0 list, or an AttributeError (a list of images).
    from keras_resnet.classifier import load_classifier
    from keras_resnet.predict import predict

    classifier = load_classifier(served.model_dir)[0]
    for arguments, message in (
        (dict(class_names=[f"c{i}" for i in range(9)]), "Received: 9 names"),
        (dict(class_names="abcdefghij"), "Received: class_names='abcdefghij'"),
        (dict(top_k=0), "Received: top_k=0"),
        (dict(top_k=11), "Received: top_k=11"),
        (dict(images=np.zeros((2, 28, 28, 3))), "Received: shape (2, 28, 28, 3)"),
        # Classified before: NaN as class 0 of probability NaN (invalid
        # JSON), pixels scaled to [-1, 1] as confident nonsense, resampled
        # ones beyond [0, 255].
        (dict(images=np.full((2, 32, 32, 3), np.nan)), "Received: 6144 of 6144 values NaN or infinite"),
        (dict(images=np.linspace(-1, 1, 6144).reshape(2, 32, 32, 3)), "[0, 255] (the model normalizes them "
                                                                        "itself), not pixels scaled to [-1, 1]: "
                                                                        "pass (images + 1) * 127.5. Received: "
                                                                        "values from -1 to 1"),
        (dict(images=np.linspace(-2, 257, 6144).reshape(2, 32, 32, 3)), "[0, 255] (the model normalizes them "
                                                                          "itself); clip resampled images, np.clip("
                                                                          "images, 0, 255). Received: values from "
                                                                          "-2 to 257"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            predict(classifier, **{"images": served.images[:2], **arguments})
    assert len(predict(classifier, served.images[:2].tolist(), top_k=10)[1]) == 10
    import keras

    five = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(),
                             keras.layers.Dense(5, activation="softmax")])
    with pytest.raises(ValueError, match=re.escape("has 5 classes, not CIFAR-10's 10: pass their names")):
        predict(five, served.images[:2])
    assert sorted(t["class_name"] for t in predict(five, served.images[:1], 5, list("abcde"))[0]) == list("abcde")


# `python -m keras_resnet.predict ARG...` that names, as it exits, which of
# Keras and TensorFlow it imported (on stderr, after its own lines).
PREDICT_NAMING_IMPORTS = textwrap.dedent('''
    import atexit, runpy, sys
    atexit.register(lambda: print("imported:", [m for m in ("keras", "tensorflow") if m in sys.modules],
                                  file=sys.stderr))
    runpy.run_module("keras_resnet.predict", run_name="__main__", alter_sys=True)
''')


def test_predict_cli_bad_inputs_exit_2(served, image_files, tmp_path):
    not_image = tmp_path / "notes.png"
    not_image.write_text("not an image\n")
    bomb = write_png_bomb(tmp_path / "bomb.png")
    big = tmp_path / "big.png"
    Image.new("RGB", (400, 300)).save(big)
    damaged = tmp_path / "damaged.png"  # its IHDR chunk's width changed: "not a PNG" before
    png = bytearray(big.read_bytes())
    png[20] ^= 1
    damaged.write_bytes(bytes(png))
    out = run_python([
        "-c", PREDICT_NAMING_IMPORTS, "--model", served.model_dir,
        image_files.real[0], str(not_image), str(damaged), str(tmp_path / "missing.jpg"),
        str(bomb), str(big), str(tmp_path), "", "--max-pixels", "100000",
    ])
    assert out.returncode == 2
    assert out.stdout == ""
    # Images are checked before Keras and TensorFlow load (whose start-up
    # lines some machines print whatever TF_CPP_MIN_LOG_LEVEL says).
    assert out.stderr.splitlines() == [
        f"error: {not_image}: not a PNG or JPEG image (Pillow cannot identify it).",
        f"error: {damaged}: cannot decode the image (a PNG whose header Pillow cannot read); "
        "the file may be truncated or corrupt.",
        f"error: {tmp_path / 'missing.jpg'}: no such file.",
        f"error: {bomb}: 20000x20000 = 400,000,000 pixels, over the limit of "
        "100,000 (a possible decompression bomb). Pass --max-pixels with a "
        "larger value to read it anyway.",
        f"error: {big}: 400x300 = 120,000 pixels, over the limit of 100,000 (a "
        "possible decompression bomb). Pass --max-pixels with a larger value "
        "to read it anyway.",
        f"error: {tmp_path}: not a file; pass image files.",
        # "$IMAGE" of an unset variable: a traceback before (load_image's
        # ValueError for its `path` argument).
        "error: an IMAGE argument is empty (''): pass the path of an image file.",
        "imported: []",
    ]


def test_ctrl_c_during_the_predict_command_is_one_line(tmp_path, capsys, monkeypatch):
    # A traceback through TensorFlow before, as export's and bench's were.
    from keras_resnet import predict

    def interrupted(path):
        raise KeyboardInterrupt

    Image.new("RGB", (32, 32)).save(tmp_path / "cat.png")
    monkeypatch.setattr(predict, "load_classifier", interrupted)
    try:
        code, out, err = call_main(predict.main, ["--model", str(tmp_path / "m.keras"),
                                                  str(tmp_path / "cat.png")], capsys)
    except KeyboardInterrupt:
        pytest.fail("the Ctrl-C went out of the predict command as a KeyboardInterrupt")
    assert (code, out) == (130, "")
    assert err.strip().splitlines() == ["Interrupted before the predictions were printed."]


def test_predict_into_a_pipe_closed_early_ends_without_a_traceback(served, image_files):
    # `python -m keras_resnet.predict ... | head -2`: the reader is gone
    # before the tables are written. Before: a traceback ending in
    # "BrokenPipeError: [Errno 32] Broken pipe" on stderr, exit 1.
    out = run_python(["-m", "keras_resnet.predict", "--model", served.model_dir, *image_files.real],
                     reader_gone=True)
    assert out.returncode == 141  # 128 + SIGPIPE, as a shell reports a command SIGPIPE ended
    assert out.stderr.splitlines()[-1:] == [
        "python -m keras_resnet.predict: stopped: its output's reader closed the pipe."], out.stderr
    assert "Traceback" not in out.stderr, out.stderr


def test_predict_bad_model_path(served, image_files, tmp_path, capsys):
    from keras_resnet.predict import main

    import keras

    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "model" / "3").mkdir(parents=True)
    unbuilt = tmp_path / "unbuilt.keras"  # an AttributeError traceback from Keras' input_shape
    keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")]).save(unbuilt)
    for model, error in (
        (empty, "holds no SavedModel: expected saved_model.pb, or version folders"),
        (unbuilt, "is not a CIFAR-10 classifier: it was never built, so it has no input shape"),
        (tmp_path / "model", "its highest version"),
        (tmp_path / "missing.keras", "No model at"),
    ):
        assert main(["--model", str(model), image_files.real[0]]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert len(captured.err.splitlines()) == 1 and error in captured.err


# === Image conversion ===


def test_image_conversion(served, tmp_path):
    from keras_resnet.predict import load_image

    original = served.images[5]
    enlarged = np.asarray(Image.fromarray(original).resize((96, 96), Image.Resampling.NEAREST))
    wide = np.zeros((96, 131, 3), np.uint8)
    wide[:, 17:113] = enlarged  # (131 - 96) // 2 = 17 columns cut on the left
    tall = np.zeros((131, 96, 3), np.uint8)
    tall[17:113] = enlarged  # and 17 rows at the top
    cases = {
        "exact.png": (Image.fromarray(original), original),
        "enlarged.png": (Image.fromarray(wide), original),
        "enlarged_tall.png": (Image.fromarray(tall), original),
        "transparent.png": (Image.new("RGBA", (50, 40), (10, 20, 30, 0)), 255),
        "half_black.png": (Image.new("LA", (40, 50), (0, 128)), 127),
        "gray16.png": (Image.fromarray(np.full((8, 8), 32896, np.uint16)), 128),
    }
    gray = Image.fromarray(original).convert("L")
    cases["gray.png"] = (gray, np.repeat(np.asarray(gray)[..., None], 3, axis=-1))
    # A halving averages each 2x2 square: a checkerboard of 0 and 200 is
    # all 100 (a nearest-pixel resize would keep 0s and 200s).
    rows, columns = np.indices((64, 64))
    checker = np.repeat(((rows + columns) % 2 * 200).astype(np.uint8)[..., None], 3, axis=-1)
    cases["checker.png"] = (Image.fromarray(checker), 100)
    palette = Image.fromarray(original).convert("P", palette=Image.Palette.ADAPTIVE)
    cases["palette.png"] = (palette, np.asarray(palette.convert("RGB")))
    # A tRNS chunk's transparent palette entry or RGB colour is white too.
    halves = np.zeros((32, 32), np.uint8)
    halves[16:] = 1
    two_colours = Image.fromarray(halves, "P")
    two_colours.putpalette([10, 20, 30, 200, 100, 50])
    expected = np.full((32, 32, 3), 255, np.uint8)
    expected[16:] = (200, 100, 50)
    cases["palette_trns.png"] = (two_colours, expected, dict(transparency=0))
    cases["rgb_trns.png"] = (two_colours.convert("RGB"), expected, dict(transparency=(10, 20, 30)))
    for name, (image, expected, *options) in cases.items():
        image.save(tmp_path / name, **(options[0] if options else {}))
        if options:  # the file has its tRNS chunk
            assert Image.open(tmp_path / name).info["transparency"] == options[0]["transparency"]
        array = load_image(str(tmp_path / name))
        assert array.dtype == np.uint8 and array.shape == (32, 32, 3), name
        np.testing.assert_array_equal(array, np.broadcast_to(expected, (32, 32, 3)), name)

    # 16-bit gray whose tRNS names a transparent gray value: that value is
    # white, as other transparency is (it came out near black, 1000 / 257).
    values = np.full((32, 32), 60000, np.uint16)
    values[:16] = 1000
    Image.fromarray(values).save(tmp_path / "gray16_trns.png", transparency=1000)
    expected = np.full((32, 32, 3), 233, np.uint8)  # round(60000 / 257)
    expected[:16] = 255
    np.testing.assert_array_equal(load_image(str(tmp_path / "gray16_trns.png")), expected)

    # EXIF orientation 6: stored sideways, shown rotated 90 degrees clockwise.
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(wide).save(tmp_path / "sideways.png", exif=exif)
    upright = Image.fromarray(wide).transpose(Image.Transpose.ROTATE_270)
    upright.save(tmp_path / "upright.png")
    np.testing.assert_array_equal(
        load_image(str(tmp_path / "sideways.png")), load_image(str(tmp_path / "upright.png"))
    )


def test_decompression_bomb_refused_at_the_default_limit(tmp_path):
    from keras_resnet.predict import PredictError
    from keras_resnet.predict import load_image

    bomb = write_png_bomb(tmp_path / "bomb.png")
    assert os.path.getsize(bomb) < 200_000
    with pytest.raises(PredictError, match="over the limit of 89,478,485"):
        load_image(str(bomb))
    # Between the limit and twice it, Pillow only warns: refused as well.
    with pytest.raises(PredictError, match="over the limit of 300,000,000"):
        load_image(str(bomb), max_pixels=300_000_000)
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # restored


def test_an_image_of_another_format_is_named_with_the_fix(tmp_path):
    # A GIF, WebP or BMP was "not a PNG or JPEG image (Pillow cannot identify it)".
    from keras_resnet.predict import PredictError
    from keras_resnet.predict import load_image

    for name, kind in (("cat.gif", "GIF"), ("cat.bmp", "BMP"), ("cat.tif", "TIFF")):
        Image.new("RGB", (40, 30), "red").save(tmp_path / name)
        with pytest.raises(PredictError) as info:
            load_image(str(tmp_path / name))
        assert str(info.value) == (f"{tmp_path / name}: a {kind} image; only PNG and JPEG are "
                                   "read: convert it to PNG first.")
    with pytest.raises(PredictError, match="a GIF image; only PNG and JPEG"):  # over the limit too
        load_image(str(tmp_path / "cat.gif"), max_pixels=100)
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # restored
    # A PNG read with max_pixels="100" was "a PNG image; only PNG and JPEG
    # are read: convert it to PNG first"; path=None a TypeError from os.
    Image.new("RGB", (40, 30), "red").save(tmp_path / "cat.png")
    for arguments, message in (((str(tmp_path / "cat.png"), "100"), "Received: max_pixels='100'"),
                               ((str(tmp_path / "cat.png"), 0), "Received: max_pixels=0"),
                               ((None,), "`path` must be a path (a str or os.PathLike). Received: path=None")):
        with pytest.raises(ValueError, match=re.escape(message)):
            load_image(*arguments)
    assert Image.MAX_IMAGE_PIXELS == 89_478_485


def test_max_pixels_none_reads_without_a_limit_as_pillow_does(tmp_path, monkeypatch):
    # Pillow's own setting, Image.MAX_IMAGE_PIXELS = None (a common idiom
    # before importing this module, which makes it load_image's default):
    # no limit. The max_pixels check refused it, and so the default.
    from keras_resnet.predict import load_image

    Image.new("RGB", (40, 30), "red").save(tmp_path / "cat.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert load_image(tmp_path / "cat.png", max_pixels=None)[0, 0].tolist() == [255, 0, 0]
    assert Image.MAX_IMAGE_PIXELS is None  # restored
    with pytest.raises(ValueError, match=re.escape("Received: max_pixels=0")):  # checked still
        load_image(tmp_path / "cat.png", max_pixels=0)


def test_truncated_images_are_one_line_errors(served, tmp_path):
    from keras_resnet.predict import PredictError
    from keras_resnet.predict import load_image

    image = Image.fromarray(served.images[0]).resize((256, 256))
    for name in ("cut.png", "cut.jpg"):
        image.save(tmp_path / name)
        data = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 2])
        with pytest.raises(PredictError) as info:
            load_image(str(tmp_path / name))
        message = str(info.value)
        assert "cannot decode the image" in message and "\n" not in message
