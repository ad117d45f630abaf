"""Content fingerprints of code, data and config: what decides whether work is new.

No TensorFlow here: `rerun_guard` uses these before anything heavy is imported.
"""
from __future__ import annotations

import glob
import hashlib
import os
from pathlib import Path
from typing import Iterable

REPO_PACKAGES = ("pipeline", "components", "models")


def source_fingerprint(package_dirs: Iterable[Path]) -> str:
    """A hash of every .py file under the given package folders (names and contents)."""
    digest = hashlib.sha256()
    for folder in package_dirs:
        for path in sorted(Path(folder).rglob("*.py")):
            digest.update(str(path.relative_to(folder.parent)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


PROJECT_DIR = Path(__file__).resolve().parents[2]  # pipeline/definition/ is two below it


def package_dir(name: str) -> Path:
    """The project's top-level package folder `name` (models, components...), wherever
    the project is checked out, for `source_fingerprint`."""
    return PROJECT_DIR / name


def files_fingerprint(pattern: str) -> str:
    """Names, sizes and modification times of the files matching `pattern`.

    The same facts TFX's file-based ExampleGen uses to decide whether a span changed.
    """
    digest = hashlib.sha256()
    for path in sorted(glob.glob(pattern)):
        stat = os.stat(path)
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]
