import json, sys
from keras_resnet import data as d
from keras_resnet.model import load_model
from keras_resnet.evaluate import predict_views, TTA_TRANSFORMS, accuracy
import numpy as np
c = d.load_cifar10("../shared/cifar10/cifar-10-batches-py")
_, _, xv, yv = d.split_validation(c.x_train, c.y_train, 5000, 0)
out = {}
for run in sys.argv[1:]:
    m = load_model(f"runs/{run}/model.keras")
    v = predict_views(m, xv, TTA_TRANSFORMS["flip-shift"], batch_size=500)
    out[run] = dict(plain=accuracy(v[0], yv), flip=accuracy(np.mean(v[:2], 0), yv), flip_shift=accuracy(np.mean(v, 0), yv))
    print(run, out[run], flush=True)
