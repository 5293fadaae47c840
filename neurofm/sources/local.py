"""Local files and folders as a source: finding files and fingerprinting them."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from neurofm.errors import ReaderError

__all__ = ["find_files", "sha256_file"]


def sha256_file(path: str | os.PathLike[str], block_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in blocks so memory stays flat on multi-GB files."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(block_size):
            digest.update(block)
    return digest.hexdigest()


def find_files(src: str | os.PathLike[str], suffix: str = ".nwb") -> list[Path]:
    """The files to ingest from ``src``: the file itself, or every ``*suffix`` below a folder.

    Hidden files and folders (e.g. ``.tmp`` downloads) are skipped; the result is sorted so a
    run is reproducible.

    Raises
    ------
    ReaderError
        If ``src`` does not exist, or is a folder without any ``*suffix`` file.
    """
    src = Path(src)
    if src.is_file():
        return [src]
    if not src.exists():
        raise ReaderError(f"{src}: no such file or folder")
    found = sorted(
        p
        for p in src.rglob(f"*{suffix}")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(src).parts)
    )
    if not found:
        raise ReaderError(f"{src}: folder contains no {suffix} files")
    return found
