"""CIFAR-100: its files, checksums and loading; the benchmarks built from it (Split CIFAR-100, few-shot
class-incremental CIFAR-100) with their published settings."""

from __future__ import annotations

from hypermask.data.torchvision_io import torchvision_io
from hypermask.registry import BenchmarkSpec, DatasetSpec, register_benchmark, register_dataset

FOLDER = "cifar-100-python"
# md5 of the files of the python version (torchvision's layout).
CIFAR100_MD5 = {"train": "16019d7e3df5f24257cddd939b257f8d", "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
                "meta": "7973b15100ade9c7d40fb424638fde48"}


load, download = torchvision_io("CIFAR100")


register_dataset(DatasetSpec(
    name="cifar100", folder=FOLDER, files={f"{FOLDER}/{name}": md5 for name, md5 in CIFAR100_MD5.items()},
    load=load, download=download, image_shape=(32, 32, 3), classes=100, train_size=50_000, test_size=10_000,
    train_per_class=500))

SPLIT_CIFAR100 = dict(
    target="resnet20", target_hidden=[], tasks=10, validation_size=500,
    embedding_size=48, hnet_hidden=[100], p=0.0, beta=1e-2, lambda_=1.0,
    masked_l1=False, lr=1e-3, batch_size=32, iterations=0, epochs=200, augment=True,
    model_selection="best_val")
# Target-specific published values that differ from the benchmark's defaults.
TARGET_DEFAULTS = {"zenkenet": dict(lambda_=1e-2)}
# HNET's own published configuration (see hypermask/data/mnist.py). cifar/train_args.py:70-85
# (resnet_cifar; their target is ResNet-32 on CIFAR-10/100): beta 0.05, chunks of 7000, temb 32, chunk
# emb 32, lr 1e-3, 200 epochs, batch 32. Their hypernetwork has no hidden layer (hnet_arch ''), which this
# library does not accept: the benchmark's [100] is kept.
METHOD_DEFAULTS = {"hnet": dict(
    embedding_size=32, chunk_size=7000, chunk_embedding_size=32, beta=0.05, lr=1e-3,
    batch_size=32, epochs=200)}
# cifar/train_args.py:91-106 (zenke_cifar) and cifar/README.rst (--disable_data_augmentation):
# beta 0.01, chunks of 5500, hnet 100,150,200, temb 48, chunk emb 80, lr 1e-4, 80 epochs, batch
# 256, no augmentation. Not reproduced: Adam beta1 0.5 and dropout 0.25.
METHOD_TARGET_DEFAULTS = {("hnet", "zenkenet"): dict(
    embedding_size=48, hnet_hidden=[100, 150, 200], chunk_size=5500, chunk_embedding_size=80,
    beta=1e-2, lr=1e-4, batch_size=256, epochs=80, augment=False)}

register_benchmark(BenchmarkSpec(
    name="split_cifar100", dataset="cifar100", build="hypermask.data.streams:split_cifar100",
    input_shape=(3, 32, 32), outputs=10, targets=("resnet20", "zenkenet"), max_tasks=10, task_share=0.1,
    defaults=SPLIT_CIFAR100, target_defaults=TARGET_DEFAULTS, method_defaults=METHOD_DEFAULTS,
    method_target_defaults=METHOD_TARGET_DEFAULTS,
))

# Few-shot class-incremental CIFAR-100 as in the FSCIL literature (Tao et al., CVPR 2020): 60 base classes
# with all their training images, then eight 5-way 5-shot sessions; one output layer over all 100 classes.
# Class order and shots are drawn with ``protocol_seed``. Split CIFAR-100's network and optimisation
# settings otherwise.
register_benchmark(BenchmarkSpec(
    name="fscil_cifar100", dataset="cifar100", build="hypermask.data.streams:fscil_cifar100",
    input_shape=(3, 32, 32), outputs=100, targets=("resnet20", "zenkenet"), max_tasks=100, task_share=0.6,
    defaults={**SPLIT_CIFAR100, "tasks": 9, "base_classes": 60, "ways": 5, "shots": 5, "validation_size": 300},
    target_defaults=TARGET_DEFAULTS, method_defaults=METHOD_DEFAULTS,
    method_target_defaults=METHOD_TARGET_DEFAULTS, check="hypermask.data.fscil:check_settings", shots_cap_every_task=False,
))
