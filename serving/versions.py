"""The layout of a model's versions on disk, shared by whoever writes or reads it.

TF Serving's file-system source serves a model from `<base_path>/<N>/`, where only names
that are positive integers are versions; anything else (staging folders, records) is
ignored. The pipeline's Pusher adds to that layout:

- `<N>/assets.extra/push_manifest.json`: where the version came from (model URI, push
  time, run), JSON; TF Serving ignores extra assets;
- `<base_path>/.last_version`: the highest version ever pushed, so version numbers never
  go down even after versions are deleted or moved.

The Pusher (which writes it, on any file system), the model repository and the `mlops`
operations (which read it) all use this module. It imports no TensorFlow, and does no I/O
itself: each caller reads the names and text through its own file system.
"""
from __future__ import annotations

import json
import posixpath
from typing import Any, Iterable, Optional

MANIFEST_PATH = posixpath.join("assets.extra", "push_manifest.json")
VERSION_RECORD = ".last_version"


def version_number(name: str) -> Optional[int]:
    """The version a folder name stands for, or None: TF Serving's rule, a positive
    integer (a trailing `/`, as object stores list folders, is allowed)."""
    name = name.rstrip("/")
    if name.isdigit() and int(name) > 0:
        return int(name)
    return None


def version_numbers(names: Iterable[str]) -> list[int]:
    """The versions among a base path's entries, ascending."""
    return sorted(number for number in map(version_number, names) if number is not None)


def parse_manifest(text: str) -> Optional[dict[str, Any]]:
    """A push manifest's content, or None when it is not a JSON object."""
    try:
        manifest = json.loads(text)
    except ValueError:
        return None
    return manifest if isinstance(manifest, dict) else None


def parse_version_record(text: str) -> int:
    """The number `.last_version` holds (0 when empty or unreadable)."""
    text = text.strip()
    return int(text) if text.isdigit() else 0
