"""MNIST: its files, checksums and loading; the benchmarks built from it (Permuted MNIST, Split MNIST,
few-shot class-incremental MNIST) with their published settings."""

from __future__ import annotations

from hypermask.data.torchvision_io import torchvision_io
from hypermask.registry import BenchmarkSpec, DatasetSpec, register_benchmark, register_dataset

# md5 of the uncompressed MNIST IDX files (torchvision's raw/ layout).
MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}


load, download = torchvision_io("MNIST")


register_dataset(DatasetSpec(
    name="mnist", folder="MNIST", files={f"MNIST/raw/{name}": md5 for name, md5 in MNIST_MD5.items()},
    load=load, download=download, image_shape=(28, 28), classes=10, train_size=60_000, test_size=10_000,
    train_per_class=5421))

# Published configurations (the HyperMask paper, its table of hyperparameters). A method's own published
# configuration (HNET's) lives with the method (hypermask/methods/<name>/__init__.py).
register_benchmark(BenchmarkSpec(
    name="permuted_mnist", dataset="mnist", build="hypermask.data.streams:permuted_mnist",
    input_shape=(1, 32, 32), outputs=10, targets=("mlp",), max_tasks=100, task_share=1.0,
    defaults=dict(
        target="mlp", target_hidden=[1000, 1000], tasks=10, validation_size=5000,
        embedding_size=24, hnet_hidden=[100, 100], p=0.0, beta=5e-4, lambda_=1e-3,
        masked_l1=True, lr=1e-3, batch_size=128, iterations=5000, epochs=0, augment=False,
        model_selection="last"),
))

SPLIT_MNIST = dict(
    target="mlp", target_hidden=[400, 400], tasks=5, validation_size=1000,
    embedding_size=128, hnet_hidden=[25, 25], p=30.0, beta=1e-3, lambda_=1e-3,
    masked_l1=True, lr=1e-3, batch_size=128, iterations=2000, epochs=0, augment=True,
    model_selection="last")

register_benchmark(BenchmarkSpec(
    name="split_mnist", dataset="mnist", build="hypermask.data.streams:split_mnist",
    input_shape=(1, 28, 28), outputs=2, targets=("mlp",), max_tasks=5, task_share=0.2,
    defaults=SPLIT_MNIST,
))

# Few-shot class-incremental MNIST: a base session of digits 0-3 with all their training images, then three
# 2-way 5-shot sessions ({4,5}, {6,7}, {8,9}; shots drawn with protocol_seed); Split MNIST's network and
# optimisation settings otherwise.
register_benchmark(BenchmarkSpec(
    name="fscil_mnist", dataset="mnist", build="hypermask.data.streams:fscil_mnist",
    input_shape=(1, 28, 28), outputs=10, targets=("mlp",), max_tasks=10, task_share=0.5,
    defaults={**SPLIT_MNIST, "tasks": 4, "base_classes": 4, "ways": 2, "shots": 5, "validation_size": 500},
    settings_like="split_mnist", check="hypermask.data.fscil:check_settings", shots_cap_every_task=False,
))
