"""Datasets as in-memory tensors, images scaled to [0, 1] (the paper's preprocessing).

>>> from funcsim.data import load_dataset
>>> ds = load_dataset("digits")
>>> ds.x_train.shape, ds.x_test.shape, ds.num_classes
(torch.Size([1347, 1, 8, 8]), torch.Size([450, 1, 8, 8]), 10)
"""

from funcsim.data import cifar, digits, mnist, synthetic  # noqa: F401 - register loaders
from funcsim.data._api import (
    DATA_DIR_ENV,
    DATASETS,
    DatasetLoader,
    default_data_dir,
    list_datasets,
    load_dataset,
    needs_files,
    register_dataset,
)
from funcsim.data._dataset import Dataset
from funcsim.data.cifar import RestrictedUnpickler, read_cifar_batch
from funcsim.data.idx import read_idx

__all__ = [
    "DATASETS",
    "DATA_DIR_ENV",
    "Dataset",
    "DatasetLoader",
    "RestrictedUnpickler",
    "default_data_dir",
    "list_datasets",
    "load_dataset",
    "needs_files",
    "read_cifar_batch",
    "read_idx",
    "register_dataset",
]
