"""The on-disk package format: config, manifest, archives, test data."""

from neuropod.package.builder import PackageBuilder
from neuropod.package.config import ModelConfig
from neuropod.package.package import Package
from neuropod.package.test_data import TestData, load_test_data, save_test_data

__all__ = ["ModelConfig", "Package", "PackageBuilder", "TestData", "load_test_data", "save_test_data"]
