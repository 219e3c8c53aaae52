cd "$(dirname "$0")/../../.."
D=../shared/cifar10/cifar-10-batches-py
for mode in 0 default; do
  if [ $mode = 0 ]; then export TF_ENABLE_ONEDNN_OPTS=0; else unset TF_ENABLE_ONEDNN_OPTS; fi
  echo "== seed $mode"; python -m keras_resnet.bench --data-dir $D 2>&1 | tail -1
  echo "== fast-cpu $mode"; python -m keras_resnet.bench --preset fast-cpu --batch-size 256 --data-dir $D 2>&1 | tail -1
done
echo ALLDONE
