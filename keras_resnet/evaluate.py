"""Evaluation: accuracy with and without test-time augmentation.

`python -m keras_resnet.evaluate` (the report with plots) builds on these.
"""

import numpy as np


def predict_probabilities(model, images, batch_size=256, tta=False):
    """Class probabilities for uint8 or float images in 0-255.

    With `tta=True`, the mean of the predictions for the images and their
    mirror images (flip test-time augmentation).
    """
    images = np.asarray(images, dtype="float32")
    probabilities = model.predict(images, batch_size=batch_size, verbose=0)
    if tta:
        flipped = model.predict(images[:, :, ::-1], batch_size=batch_size, verbose=0)
        probabilities = (probabilities + flipped) / 2
    return np.asarray(probabilities)
