"""Pretrained models: checkpoints that explain themselves, and a new session in one call.

* :func:`load_pretrained` loads a POYO checkpoint (a file, or a registered name such as
  ``"poyo-tiny-synthetic"``) as a :class:`PretrainedPOYO`: ``.card``, ``.model``,
  ``.adapt(recording, trials=20)``, ``.predict(recording)``, ``.save(path)``.
* :class:`ModelCard`: what a checkpoint says of itself (config, vocabularies, training data
  and settings, scores, versions); ``neurofm info CKPT`` prints it.
* :func:`register` names a checkpoint file; :data:`REGISTRY` lists the known names.
* ``from_torch_brain`` / ``to_torch_brain`` (:mod:`neurofm.pretrained.torch_brain`) convert
  torch_brain's POYO checkpoints.

Names are loaded on first use, so importing this package does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public names and the module each comes from (loaded on first access).
_LAZY = {
    "ModelCard": "neurofm.pretrained.card",
    "NO_CARD": "neurofm.pretrained.card",
    "read_card": "neurofm.pretrained.card",
    "update_card": "neurofm.pretrained.card",
    "CheckpointError": "neurofm.pretrained.errors",
    "NoUnitsError": "neurofm.pretrained.errors",
    "TargetMismatchError": "neurofm.pretrained.errors",
    "REGISTRY": "neurofm.pretrained.registry",
    "register": "neurofm.pretrained.registry",
    "unregister": "neurofm.pretrained.registry",
    "PretrainedPOYO": "neurofm.pretrained.session",
    "load_pretrained": "neurofm.pretrained.session",
    "from_torch_brain": "neurofm.pretrained.torch_brain",
    "to_torch_brain": "neurofm.pretrained.torch_brain",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'neurofm.pretrained' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
