"""Reading neurofm's Lightning checkpoints safely (``weights_only=True``), for every model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from neurofm.errors import NeuroFMError

__all__ = ["checkpoint_format", "read_checkpoint"]


def _load(path: Path) -> Any:
    # weights_only: nothing is unpickled but tensors and plain containers
    return torch.load(path, map_location="cpu", weights_only=True)


def checkpoint_format(path: str | Path) -> str | None:
    """The ``format`` a neurofm checkpoint declares (``neurofm.poyo``, ``neurofm.samba``), or
    None for a missing file, an unreadable one or another tool's."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        ckpt = _load(path)
    except Exception:
        return None
    meta = ckpt.get("neurofm") if isinstance(ckpt, dict) else None
    return meta.get("format") if isinstance(meta, dict) else None


def read_checkpoint(
    path: str | Path, fmt: str, model_name: str
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The ``neurofm`` section and the model's state dict (``model.`` prefix removed).

    Raises
    ------
    NeuroFMError
        A missing or unreadable file, or a checkpoint of another format.
    """
    path = Path(path)
    if not path.is_file():
        raise NeuroFMError(f"{path}: no such checkpoint")
    try:
        ckpt = _load(path)
    except Exception as exc:
        msg = f"{path}: not a loadable checkpoint ({type(exc).__name__}: {exc})"
        raise NeuroFMError(msg) from None
    meta = ckpt.get("neurofm") if isinstance(ckpt, dict) else None
    if not meta or meta.get("format") != fmt:
        raise NeuroFMError(
            f"{path}: not a neurofm {model_name} checkpoint (no 'neurofm' section with format "
            f"{fmt!r}); was it written by another model or tool?"
        )
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()}
    return meta, state
