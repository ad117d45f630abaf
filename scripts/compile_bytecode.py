"""Compiles the environment's bytecode, except for the code no process of the project imports.

Why at install: where PYTHONDONTWRITEBYTECODE is set (as on CI images and these machines)
Python would otherwise compile TensorFlow's sources again in every process that imports it.
Why not everything (what `uv pip sync --compile-bytecode` does): two thirds of the
environment's 22,000 source files are never imported by a run, a server or the tests
(Vertex AI's generated clients alone are 1,100 files and 78 MB, pulled in by TFX's
extras), and compiling them was most of a fresh set-up's time. A module left out still
works: Python compiles it when it is imported (and keeps the result where bytecode may be
written, as `make test` allows).

Usage: python scripts/compile_bytecode.py SITE_PACKAGES
"""
from __future__ import annotations

import importlib.util
import multiprocessing
import os
import py_compile
import re
import sys
from typing import Iterator

# Folders never imported here: test suites shipped in wheels, Google Cloud clients TFX and
# Beam depend on but a run never calls, tools of other frameworks, the S3 server's
# hundreds of AWS services (the tests start it; it compiles the few it needs itself).
NEVER_IMPORTED = re.compile(
    r"/tests/"
    r"|/google/cloud/(aiplatform|resourcemanager|bigtable_admin|dlp|monitoring)"
    r"|/google/genai/"
    r"|/(js2py|vertexai|debugpy|agentplatform|tensorboard|tensorflow_estimator|moto)/"
    r"|/apache_beam/(examples|dataframe|yaml)/"
    r"|/tfx/(examples|experimental/templates)/")


def sources(root: str) -> Iterator[str]:
    """The .py files under `root`, skipping the folders of `NEVER_IMPORTED`."""
    for folder, children, files in os.walk(root):
        children[:] = [name for name in children if name != "__pycache__"
                       and not NEVER_IMPORTED.search(f"{folder}/{name}/")]
        yield from (os.path.join(folder, name) for name in files if name.endswith(".py"))


def compile_one(path: str) -> None:
    """Compiles `path` unless its bytecode is current (a refreshed environment keeps the
    packages that did not change). Some packages ship files that are not valid Python 3.10
    (templates, Python 2 leftovers): Python never imports them either, so a failure is
    skipped."""
    try:
        if os.stat(importlib.util.cache_from_source(path)).st_mtime >= os.stat(path).st_mtime:
            return
    except OSError:
        pass
    try:
        py_compile.compile(path, doraise=True, quiet=1)
    except (py_compile.PyCompileError, OSError, ValueError):
        pass


def main(root: str) -> int:
    # A pool in chunks: one task per file (as compileall submits them) costs more in
    # hand-offs than compiling a small file does.
    with multiprocessing.Pool(os.cpu_count() or 1) as pool:
        for _ in pool.imap_unordered(compile_one, sources(root), chunksize=32):
            pass
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2 or not os.path.isdir(sys.argv[1]):
        sys.exit("usage: python scripts/compile_bytecode.py SITE_PACKAGES")
    sys.exit(main(sys.argv[1]))
