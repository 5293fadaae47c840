"""Recording -> the field's own formats and tools: MNE, NWB, pynapple."""

from neurofm.data.pynapple_io import to_pynapple
from neurofm.writers.mne import to_mne
from neurofm.writers.nwb import add_predictions, write_nwb

__all__ = ["add_predictions", "to_mne", "to_pynapple", "write_nwb"]
