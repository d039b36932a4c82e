"""Shared test settings."""

import os

# Keep framework start-up quiet and deterministic in every test process.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
