"""The original Neuropod's utility modules: ``config_utils``, ``eval_utils``, ``dtype_utils`` and
``randomify``."""
