"""Integrations with other systems (``neuropod.integrations.ray``); each imports its system on use."""
