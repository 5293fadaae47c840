"""neurofm: from neuroscience recordings to foundation models and analyses.

Heavy libraries (torch, pynwb, mne, ...) are imported lazily by the modules that need
them, so ``import neurofm`` and ``neurofm --help`` stay fast.
"""

__version__ = "0.1.0"

from neurofm.errors import InvalidDataError, NeuroFMError, ReaderError  # noqa: E402

__all__ = ["InvalidDataError", "NeuroFMError", "ReaderError", "__version__"]
