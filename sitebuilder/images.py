"""Image facts the pages need without an imaging library: a PNG's size from its header."""

from __future__ import annotations

import struct
from pathlib import Path

__all__ = ["png_size"]


def png_size(path: Path) -> tuple[int, int] | None:
    """Width and height from a PNG header (lets the page reserve the space: no layout jumps)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(24)
    except OSError:
        return None
    if len(head) == 24 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return width, height
    return None
