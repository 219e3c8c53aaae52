"""Classify image files: `python -m keras_resnet.predict --model PATH IMAGE...`.

`PATH` is a SavedModel version folder (`saved_models/keras_resnet/3`), a
model folder of numbered versions (the highest is used, as TF Serving does)
or a `.keras` checkpoint. For each image it prints a table of the top-k
classes, then one JSON line with every result.

Any PNG or JPEG becomes the 32x32 RGB the network takes, in this order:
1. EXIF orientation is applied (photos taken sideways come out upright).
2. 16-bit grayscale is scaled to 8 bits (`round(v / 257)`); its transparent
   gray value, if any, is kept as transparency.
3. Transparency (an alpha channel, or a transparent palette or color entry)
   is composited onto a white background; every mode then becomes RGB.
4. The largest centered square is cut out (the shorter side is kept; the
   longer side loses `(long - short) // 2` pixels at its start).
5. The square is resized to 32x32 with Pillow's `BOX` filter: each output
   pixel is the mean of the input pixels it covers (area averaging, like
   `tf.image.resize(method="area")`), so nothing aliases. A 32x32 image is
   left untouched, and an integer enlargement of one comes back exactly.

Images over `--max-pixels` pixels (default: Pillow's `MAX_IMAGE_PIXELS`,
89,478,485) are refused before decoding, as possible decompression bombs.
All images are checked before the model is loaded, and before Keras or
TensorFlow is imported: a missing file, a file that is not a PNG or JPEG, or
an image over the limit gets one line on stderr and exit status 2, with
nothing on stdout.
"""

import contextlib
import json
import os
import sys
import warnings

import numpy as np
from PIL import Image
from PIL import ImageOps

from keras_resnet import cli
from keras_resnet.checks import check_class_names
from keras_resnet.checks import check_classifier
from keras_resnet.checks import check_images
from keras_resnet.checks import check_int
from keras_resnet.checks import check_path
from keras_resnet.classifier import ModelError
from keras_resnet.classifier import load_classifier
from keras_resnet.data import CLASS_NAMES
from keras_resnet.presets import IMAGE_SHAPE

FORMATS = ("PNG", "JPEG")
SIGNATURES = {"PNG": b"\x89PNG\r\n\x1a\n", "JPEG": b"\xff\xd8\xff"}  # each file's first bytes
IMAGE_SIZE = IMAGE_SHAPE[1::-1]  # (width, height), as Pillow takes it
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS
BATCH_SIZE = 256
_SIXTEEN_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


class PredictError(ValueError):
    """An input the command cannot use; the message names it and the fix."""


@contextlib.contextmanager
def _pixel_limit(max_pixels):
    """Makes Pillow refuse any image over `max_pixels` pixels.

    Pillow warns above `MAX_IMAGE_PIXELS` and raises `DecompressionBombError`
    above twice that; the warning is turned into an error too.
    """
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def _header(path, formats=FORMATS):
    """The format name and (width, height) from the file header, without
    decoding pixels. Raises what `Image.open` raises."""
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(path, formats=formats) as image:
            return image.format, image.size
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def to_model_input(image):
    """Converts a Pillow image to the (32, 32, 3) uint8 RGB array the model takes.

    See the module docstring for the exact steps.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode in _SIXTEEN_BIT_MODES:
        # Pillow's own conversion clips 16-bit values at 255; scale instead.
        values = np.asarray(image, dtype=np.float64)
        gray = Image.fromarray(np.clip(np.round(values / 257), 0, 255).astype(np.uint8))
        transparent = image.info.get("transparency")  # a 16-bit gray value
        if transparent is not None:  # kept as an alpha channel, for step 3
            alpha = Image.fromarray(np.where(values == transparent, 0, 255).astype(np.uint8))
            gray = Image.merge("LA", (gray, alpha))
        image = gray
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    image = image.convert("RGB")

    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    image = image.resize(
        IMAGE_SIZE,
        Image.Resampling.BOX,
        box=(left, top, left + side, top + side),
    )
    return np.asarray(image, dtype=np.uint8)


def load_image(path, max_pixels=DEFAULT_MAX_PIXELS):
    """Reads a PNG or JPEG file as a (32, 32, 3) uint8 RGB array.

    Args:
        path: the image file.
        max_pixels: int. Refuse images with more pixels than this (width
            times height), before decoding them; `None` for no limit, as
            Pillow's `Image.MAX_IMAGE_PIXELS = None` (the default is that
            setting as this module is imported).

    Raises:
        PredictError: the file is missing, is not a PNG or JPEG, cannot be
            decoded, or is over `max_pixels`.
        ValueError: `path` is not a path, or `max_pixels` not a positive
            int (Pillow compared a string with an image's size and failed
            inside, which read as "only PNG and JPEG are read" of a PNG).
    """
    check_path("path", path)
    if max_pixels is not None:  # Pillow's "no limit", and the default where it was set so
        check_int("max_pixels", max_pixels)
    if not os.path.exists(path):
        raise PredictError(f"{path}: no such file.")
    if not os.path.isfile(path):
        raise PredictError(f"{path}: not a file; pass image files.")
    try:
        with _pixel_limit(max_pixels), Image.open(path, formats=FORMATS) as image:
            return to_model_input(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        _, (width, height) = _header(path)
        raise PredictError(
            f"{path}: {width}x{height} = {width * height:,} pixels, over the "
            f"limit of {max_pixels:,} (a possible decompression bomb). Pass "
            "--max-pixels with a larger value to read it anyway."
        ) from None
    except Image.UnidentifiedImageError:
        try:  # an image of another format, or no image
            kind, _ = _header(path, formats=None)
        except Exception:  # noqa: BLE001 (what Pillow cannot open is no image to it)
            kind = None
        if kind:
            raise PredictError(
                f"{path}: a {kind} image; only PNG and JPEG are read: convert it to PNG first."
            ) from None
        with open(path, "rb") as f:
            start = f.read(8)
        for kind, signature in SIGNATURES.items():
            if start.startswith(signature):
                raise PredictError(
                    f"{path}: cannot decode the image (a {kind} whose header Pillow cannot read); "
                    "the file may be truncated or corrupt."
                ) from None
        raise PredictError(f"{path}: not a PNG or JPEG image (Pillow cannot identify it).") from None
    except Exception as e:  # Pillow's decoders raise many types on bad data.
        reason = " ".join(str(e).split())
        raise PredictError(
            f"{path}: cannot decode the image ({type(e).__name__}: {reason}); "
            "the file may be truncated or corrupt."
        ) from None


def predict(classifier, images, top_k=3, class_names=None):
    """Top-k predictions for a (N, 32, 32, 3) array of images.

    Args:
        classifier: a Keras model, or what `classifier.load_classifier`
            gives (a `KerasClassifier` or a `SavedModelClassifier`).
        images: (N, 32, 32, 3) pixels in 0-255, as `load_image` gives them.
        top_k: int. Predictions per image, at most one per class.
        class_names: the names of the classes, or `None` for the
            classifier's own (a SavedModel stores them), else CIFAR-10's.

    Returns:
        A list with one list per image of `top_k` dicts `class_id`,
        `class_name`, `probability`, most probable first.
    """
    check_classifier("classifier", classifier)
    named = class_names is not None
    if not named:  # the command line's choice too
        class_names = getattr(classifier, "class_names", CLASS_NAMES)
    check_class_names("class_names", class_names)
    check_int("top_k", top_k, maximum=len(class_names))
    probabilities = np.asarray(classifier.predict(
        check_images("images", images), batch_size=BATCH_SIZE, verbose=0
    ))
    if probabilities.shape[-1] != len(class_names):
        raise ValueError(
            f"`class_names` must name the classifier's {probabilities.shape[-1]} classes, one "
            f"name each. Received: {len(class_names)} names" if named else
            f"The classifier has {probabilities.shape[-1]} classes, not CIFAR-10's "
            f"{len(class_names)}: pass their names, class_names=[...]."
        )
    results = []
    for row in probabilities:
        order = np.argsort(-row, kind="stable")[:top_k]
        results.append([
            {
                "class_id": int(c),
                "class_name": class_names[c],
                # The shortest decimal that reads back as the same float32.
                "probability": float(str(np.float32(row[c]))),
            }
            for c in order
        ])
    return results


def format_table(image, top, width=12):
    """One image's table; `width` is the class column's (a longer name's row
    would push its probability out of the column)."""
    lines = [image, f"  {'rank':>4}  {'class':<{width}}{'probability':>11}"]
    for rank, entry in enumerate(top, start=1):
        lines.append(
            f"  {rank:>4}  {entry['class_name']:<{width}}{entry['probability']:>11.4f}"
        )
    return "\n".join(lines)


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # as the other commands
    parser = cli.ArgumentParser(
        prog="python -m keras_resnet.predict",
        description="Classify PNG or JPEG images with an exported or "
        "checkpointed keras-resnet model.",
    )
    parser.add_argument(
        "--model", required=True, type=cli.path,
        help="a SavedModel version folder, a model folder (highest version "
        "used) or a .keras file",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", type=cli.path, help="PNG or JPEG files")
    parser.add_argument(
        "--top-k", type=cli.positive_int, default=3,
        help="classes to show per image (default: 3)",
    )
    parser.add_argument(
        "--max-pixels", type=cli.positive_int, default=DEFAULT_MAX_PIXELS,
        help="refuse images with more pixels than this, as possible "
        f"decompression bombs (default: {DEFAULT_MAX_PIXELS})",
    )
    args = parser.parse_args(argv)

    arrays, errors = [], []
    for path in args.images:
        if not path:  # "$IMAGE" of an unset variable; load_image's ValueError was a traceback
            errors.append("an IMAGE argument is empty (''): pass the path of an image file.")
            continue
        try:
            arrays.append(load_image(path, args.max_pixels))
        except PredictError as e:
            errors.append(str(e))
    if errors:
        for message in errors:
            print(f"error: {message}", file=sys.stderr)
        return 2
    try:
        classifier, _ = load_classifier(args.model)
        # Every classifier loaded has one output per CIFAR-10 class.
        results = predict(classifier, np.stack(arrays), min(args.top_k, len(CLASS_NAMES)))
    except ModelError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # else Ctrl-C ends in a traceback through TensorFlow
        print("\nInterrupted before the predictions were printed.", file=sys.stderr)
        return 130
    # CIFAR-10's names fit 12; an export's own (--data-dir) may be longer.
    width = max(12, *(len(entry["class_name"]) + 2 for top in results for entry in top))
    for path, top in zip(args.images, results):
        print(format_table(path, top, width))
    print(json.dumps({
        "model": args.model,
        "predictions": [
            {"image": path, "top_k": top} for path, top in zip(args.images, results)
        ],
    }))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_command(main, "python -m keras_resnet.predict"))
