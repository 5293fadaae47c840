"""The data layer: one vocabulary for spikes, sampled series and intervals of every modality."""

from neurofm.data.catalog import Catalog
from neurofm.data.recording import Metadata, Provenance, Recording
from neurofm.data.signals import Intervals, IrregularSeries, RegularSeries, Signal, Spikes, Units

__all__ = [
    "Catalog",
    "Intervals",
    "IrregularSeries",
    "Metadata",
    "Provenance",
    "Recording",
    "RegularSeries",
    "Signal",
    "Spikes",
    "Units",
]
