import numpy as np, tensorflow as tf
from keras_resnet import load_model
from keras_resnet.data import load_cifar10
x = load_cifar10("../shared/cifar10/cifar-10-batches-py").x_test[:200].astype("float32")
k = load_model("runs/fast-cpu-amd/model.keras").predict(x, verbose=0)
s = tf.saved_model.load("saved_models/keras_resnet/2").signatures["serving_default"](images=tf.constant(x))["probabilities"].numpy()
print("max abs diff", float(np.abs(k - s).max()), "same class", int((k.argmax(1) == s.argmax(1)).sum()), "/ 200")
