"""The test suite, laid out like ``src/neuropod/``.

The test of ``neuropod/<folder>/<module>.py`` is in ``tests/<folder>/`` (``tests/serving/test_http.py``
for the HTTP front end, ``tests/worker/test_ope.py`` for out-of-process workers), and the test of a
top-level module is ``tests/test_<module>.py``. Suites that cut across the package stay at the top:
``test_conformance.py`` (every backend), ``test_interchangeable.py``, ``test_compat_original.py``,
``test_public_api.py`` and ``test_readme.py``. ``tests/models/`` builds the reference models (the
addition and strings models) with each platform's packager; ``conftest.py`` exposes them as the
``addition_package`` fixture. Helpers live beside the tests that use them and are imported as
``tests.<folder>.<helper>``.
"""
