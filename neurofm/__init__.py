"""neurofm: from neuroscience recordings to foundation models and analyses.

What a user reaches for first is here::

    import neurofm

    rec = neurofm.read("raw/sub-S0/sub-S0_ses-20240304_ecephys.nwb")  # NWB, EEG or NIfTI
    cat = neurofm.Catalog("catalog")                                    # a folder of recordings
    lazy = neurofm.Recording.open("catalog/sub-S0_ses-20240304.h5")

Heavy libraries (torch, pynwb, mne, ...) are imported lazily by the modules that need
them, and these names themselves are loaded on first use (a module ``__getattr__``), so
``import neurofm`` and ``neurofm --help`` stay fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from neurofm.errors import InvalidDataError, NeuroFMError, ReaderError  # noqa: E402

#: Names loaded on first access, and the module each comes from. They re-export higher
#: layers for users; the library itself imports them from their own modules.
_LAZY = {
    "read": "neurofm.readers",
    "Catalog": "neurofm.data.catalog",
    "Recording": "neurofm.data.recording",
    "load_pretrained": "neurofm.pretrained.session",
}

__all__ = [
    "Catalog",
    "InvalidDataError",
    "NeuroFMError",
    "ReaderError",
    "Recording",
    "__version__",
    "load_pretrained",
    "read",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # the next access is a plain attribute
        return value
    raise AttributeError(f"module 'neurofm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
