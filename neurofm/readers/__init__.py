"""Readers: raw formats -> :class:`~neurofm.data.Recording` (``read_nwb`` and, later, EEG/fMRI)."""
