cp .gpu/p2/data_batch_* /root/cifar10/ && ls -l /root/cifar10
