"""The original Neuropod's utility modules: ``config_utils`` and ``eval_utils``."""
