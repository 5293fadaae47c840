"""Pretrained models known by name: ``load_pretrained("poyo-tiny-synthetic")``.

A name maps to a checkpoint file shipped inside the package (``neurofm/pretrained/weights/``)
and to the command that rebuilds it from a fixed seed. :func:`register` adds names (e.g. a
lab's own checkpoints, or a temporary one in tests).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from neurofm.pretrained.errors import CheckpointError

__all__ = ["PretrainedEntry", "REGISTRY", "WEIGHTS", "register", "resolve", "unregister"]

#: Folder of the checkpoints shipped with neurofm.
WEIGHTS = Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True)
class PretrainedEntry:
    """A named pretrained checkpoint.

    Attributes
    ----------
    path : Path
        The checkpoint file.
    description : str
        One line about it.
    rebuild : str
        How to (re)build the file when it is missing.
    """

    path: Path
    description: str = ""
    rebuild: str = ""


#: Names :func:`~neurofm.pretrained.load_pretrained` accepts, and their files.
REGISTRY: dict[str, PretrainedEntry] = {
    "poyo-tiny-synthetic": PretrainedEntry(
        WEIGHTS / "poyo-tiny-synthetic.ckpt",
        "tiny POYO pretrained on neurofm's synthetic reaching sessions (synthetic data only)",
        "python scripts/build_pretrained.py (in the repository; fixed seeds)",
    ),
}


def register(
    name: str, path: str | os.PathLike[str], description: str = "", rebuild: str = ""
) -> None:
    """Make ``name`` load ``path`` (replacing an earlier registration of that name).

    Parameters
    ----------
    name : str
        The name, e.g. ``"my-lab-poyo"``.
    path : path-like
        Its checkpoint file (it need not exist yet).
    description, rebuild : str
        One line about it, and how to build the file when it is missing.
    """
    REGISTRY[name] = PretrainedEntry(Path(path), description, rebuild)


def unregister(name: str) -> None:
    """Forget ``name`` (no error if it is unknown)."""
    REGISTRY.pop(name, None)


def resolve(path_or_name: str | os.PathLike[str]) -> Path:
    """The checkpoint file a path or a registered name stands for.

    An existing file wins over a name; a registered name whose file is missing is an error
    saying how to build it.

    Raises
    ------
    CheckpointError
        Neither an existing file nor a registered name, or a registered name not built yet.
    """
    if isinstance(path_or_name, os.PathLike) or Path(str(path_or_name)).exists():
        path = Path(path_or_name)
        if not path.is_file():
            raise CheckpointError(f"{path}: no such checkpoint file")
        return path
    name = str(path_or_name)
    entry = REGISTRY.get(name)
    if entry is None:
        raise CheckpointError(
            f"{name}: no such checkpoint file, and no pretrained model of that name "
            f"(known names: {', '.join(sorted(REGISTRY)) or 'none'})"
        )
    if not entry.path.is_file():
        how = f": run {entry.rebuild}" if entry.rebuild else ""
        raise CheckpointError(
            f"pretrained model {name!r} is not built yet (its checkpoint {entry.path} is "
            f"missing){how}"
        )
    return entry.path
