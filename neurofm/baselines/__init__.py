"""Baselines scored on the same points as the models: every result table has a floor."""

from neurofm.baselines.decoders import GRUDecoder, WienerFilter
from neurofm.baselines.hrf_ridge import HRFRidge

__all__ = ["GRUDecoder", "HRFRidge", "WienerFilter"]
