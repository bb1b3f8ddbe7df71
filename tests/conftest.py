"""One XLA compilation cache for the unit tests of a run.

Many tests train, stop and resume, or train twice to compare, and each `train()` jits its step afresh:
the same program compiled again. JAX's persistent compilation cache, keyed by the program's HLO and the
compiler flags, serves those later compiles from disk (`tests/test_trainer.py`: 128 s without it, 68 s
with it, on a 2-core CPU). It is set for this process only: a notebook compiles each program once, and
there the cache's writes cost more than they save (chapter 09: 108 s without, 121 s with), so the
notebooks' kernels run as a reader runs them. The cache starts empty and is deleted at the end; a
JAX_COMPILATION_CACHE_DIR set by the caller is used as it is.
"""

import importlib.util
import os
import pathlib
import shutil
import tempfile

import jax
import pytest

_CACHE = None
if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    _CACHE = tempfile.mkdtemp(prefix="ivlib-xla-cache-")
    jax.config.update("jax_compilation_cache_dir", _CACHE)


def pytest_unconfigure(config):
    if _CACHE is not None:
        shutil.rmtree(_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def load_benchmark():
    """load_benchmark(name): benchmarks/<name>.py as a module (benchmarks/ is not a package), without running
    its main; each script is loaded once per test run."""
    loaded = {}

    def load(name):
        if name not in loaded:
            path = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py"
            spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", path)
            loaded[name] = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(loaded[name])
        return loaded[name]

    return load
