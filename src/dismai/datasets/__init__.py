"""Datasets: the registry of built datasets and the recipes that regenerate them."""

from dismai.datasets.registry import (
    Dataset,
    DatasetError,
    DatasetSpec,
    dataset_names,
    dataset_specs,
    get_spec,
    is_built,
    load,
)

__all__ = ["Dataset", "DatasetError", "DatasetSpec", "dataset_names", "dataset_specs",
           "get_spec", "is_built", "load"]
