"""The ``neuropod`` command line: inspect, run, test and scaffold packages.

Each command lives in a module of its own (``inspect``, ``infer``, ``test``, ``placeholder``,
``platforms``) exposing ``add_parser`` and ``run``; ``main`` builds the parser and turns
errors into exit codes::

    $ neuropod inspect addition_model.zip
    $ neuropod infer addition_model.zip --input x=x.npy --input y=y.npy
    $ python -m neuropod.cli test addition_model.zip
"""

from neuropod.cli.main import main

__all__ = ["main"]
