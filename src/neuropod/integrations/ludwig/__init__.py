"""Ludwig models as neuropods: what a saved model holds (``saved_model``) and the export that
runs with Ludwig's own Python (``export``). The packager is
``neuropod.packagers.create_ludwig_neuropod``; neither module imports Ludwig or torch at import
time."""
