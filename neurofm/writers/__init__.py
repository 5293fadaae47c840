"""Recording -> the field's own formats and tools."""

from neurofm.writers.mne import to_mne

__all__ = ["to_mne"]
