"""Datasets: recipes that regenerate them and the shipped, checksummed results."""

from dismai.datasets.registry import DATASETS, Dataset, DatasetSpec, get_spec, load

__all__ = ["DATASETS", "Dataset", "DatasetSpec", "get_spec", "load"]
