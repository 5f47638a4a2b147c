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

register_benchmark(BenchmarkSpec(
    name="split_cifar100", dataset="cifar100", build="hypermask.data.streams:split_cifar100",
    input_shape=(3, 32, 32), outputs=10, targets=("resnet20", "zenkenet"), max_tasks=10, task_share=0.1,
    defaults=SPLIT_CIFAR100, target_defaults=TARGET_DEFAULTS,
))

# Few-shot class-incremental CIFAR-100 as in the FSCIL literature (TOPIC, Tao et al., CVPR 2020; CEC, Zhang et
# al., CVPR 2021): classes 0-59 as the base session with all their training images, then eight 5-way 5-shot
# sessions (classes 60-64, ..., 95-99) with the published shots (hypermask/data/fscil_cifar100_shots.json);
# one output layer over all 100 classes; the literature's ResNet-20 (16/32/64 channels). Split CIFAR-100's
# optimisation settings otherwise.
register_benchmark(BenchmarkSpec(
    name="fscil_cifar100", dataset="cifar100", build="hypermask.data.streams:fscil_cifar100",
    input_shape=(3, 32, 32), outputs=100, targets=("resnet20_k1", "resnet20", "zenkenet"), max_tasks=100,
    task_share=0.6,
    defaults={**SPLIT_CIFAR100, "target": "resnet20_k1", "tasks": 9, "base_classes": 60, "ways": 5, "shots": 5,
              "validation_size": 300},
    target_defaults=TARGET_DEFAULTS, settings_like="split_cifar100", check="hypermask.data.fscil:check_settings",
    shots_cap_every_task=False,
))
