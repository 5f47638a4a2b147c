"""Benchmarks as task streams, loaded through torchvision."""

from hypermask.data.preprocess import Preprocess
from hypermask.data.sources import (MIRROR_ENV, DataError, ImageArrays, dataset_checksums, load_arrays,
                                    locate_dataset, pin_mirror, prepare_dataset, verify_dataset)
from hypermask.data.streams import (Task, TaskStream, build_stream, dataset_for, image_shape, inference_state,
                                    stream_from_state, stream_images)

__all__ = ["MIRROR_ENV", "DataError", "ImageArrays", "Preprocess", "Task", "TaskStream", "build_stream",
           "dataset_checksums", "dataset_for", "image_shape", "inference_state", "load_arrays", "locate_dataset",
           "pin_mirror", "prepare_dataset", "stream_from_state", "stream_images", "verify_dataset"]
