"""`EpochTensorBoard`: Keras' TensorBoard, recording the learning rate already logged."""

import keras

from keras_resnet.checks import check_path


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """Keras' `TensorBoard` for epoch summaries, recording the learning rate
    that `LearningRateLogger` put in the logs.

    Keras' `TensorBoard` reads `optimizer.learning_rate` again at every
    epoch end, eagerly: on JAX a warmup schedule then compiles a fresh
    program each time (about 40 ms on a 2-core CPU), which the logger's
    compiled read avoids. Place it after `LearningRateLogger`; without a
    logged rate it reads the optimizer's, as Keras does.

    With epoch summaries only (no batch updates, no profiling) and
    `write_graph=False` it is `async_safe`: its batch ends write nothing, so
    Keras may run them in a worker thread instead of waiting for every step
    (JAX, PyTorch). The graph is written at the first batch end, through
    `self.model`, which on JAX writes the training state back into the
    variables: from a worker thread, while the next steps donate their
    buffers, it failed `fit` ("Buffer has been deleted or donated").

    Args:
        log_dir: str. Where the event files go.
        **kwargs: other `keras.callbacks.TensorBoard` arguments.

    Example:

    ```python
    callbacks = [LearningRateLogger(), EpochTensorBoard("logs", write_graph=False)]
    ```
    """

    def __init__(self, log_dir="logs", **kwargs):
        check_path("log_dir", log_dir)  # Keras wrote None into a folder "None", "" into ./train
        super().__init__(log_dir, **kwargs)
        self.async_safe = (kwargs.get("update_freq", "epoch") == "epoch"
                           and not kwargs.get("profile_batch", 0)
                           and not kwargs.get("write_graph", True))

    def _collect_learning_rate(self, logs):
        # Keras' hook (3.x) that adds the rate to the epoch's summaries.
        if "learning_rate" in logs:
            return logs
        return super()._collect_learning_rate(logs)
