"""Where things live inside a package (the original Neuropod's layout).

::

    config.json          model config: name, platform, specs, custom ops, devices
    manifest.json        sha256 of every other file
    test_data.npz        optional test inputs and expected outputs (test_data.pkl in the original)
    0/config.json        backend settings
    0/ops/               custom op libraries (always present, may be empty)
    0/data/              the model itself (model.pt, model.pb, savedmodel/, data files, ...)
    0/code/              Python code of python packages (and the custom objects of Keras ones)
    0/requirements.lock  pinned requirements of python packages
"""

CONFIG = "config.json"
MANIFEST = "manifest.json"
TEST_DATA_NPZ = "test_data.npz"
TEST_DATA_PICKLE = "test_data.pkl"
BACKEND_DIR = "0"
BACKEND_CONFIG = "0/config.json"
OPS_DIR = "0/ops"
DATA_DIR = "0/data"
CODE_DIR = "0/code"
REQUIREMENTS_LOCK = "0/requirements.lock"
REQUIREMENTS_IN = "0/requirements.in"
