"""Every plot neurofm draws: matplotlib Figures, saved atomically when given a path.

* :mod:`neurofm.viz.spikes`: :func:`plot_trial`, :func:`plot_raster`, :func:`plot_psth`.
* :mod:`neurofm.viz.decoding`: :func:`plot_predictions` (predicted vs true behaviour),
  :func:`plot_few_shot` (a new session's score against its labelled trials).
* :mod:`neurofm.viz.brain`: :func:`plot_bold_predictions`, :func:`plot_parcel_map`,
  :func:`parcel_values_to_img` (EEG -> fMRI translation, nilearn's MNI152 template),
  :func:`plot_band_attention` (attention over wavelet bands).
* :mod:`neurofm.viz.analysis`: figures of the learning-regime and bias-only analyses.
* :mod:`neurofm.viz.figures`: the backend rule and the atomic PNG writer they share.

The functions are loaded on first use, so ``import neurofm.viz`` imports neither matplotlib
nor nilearn nor the data layer (``neurofm --help`` stays fast).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from neurofm.viz.analysis import (
        plot_generation,
        plot_linear_theory,
        plot_lorenz,
        plot_multitask,
        plot_rank_sweep,
        plot_width_sweep,
    )
    from neurofm.viz.brain import (
        parcel_values_to_img,
        plot_band_attention,
        plot_bold_predictions,
        plot_parcel_map,
    )
    from neurofm.viz.decoding import plot_few_shot, plot_predictions
    from neurofm.viz.spikes import plot_psth, plot_raster, plot_trial

#: Public name -> the module of this package that defines it.
_HOME = {
    "plot_trial": "spikes",
    "plot_raster": "spikes",
    "plot_psth": "spikes",
    "plot_predictions": "decoding",
    "plot_few_shot": "decoding",
    "plot_band_attention": "brain",
    "plot_bold_predictions": "brain",
    "plot_parcel_map": "brain",
    "parcel_values_to_img": "brain",
    "plot_rank_sweep": "analysis",
    "plot_linear_theory": "analysis",
    "plot_width_sweep": "analysis",
    "plot_multitask": "analysis",
    "plot_generation": "analysis",
    "plot_lorenz": "analysis",
}

__all__ = [
    "parcel_values_to_img",
    "plot_band_attention",
    "plot_bold_predictions",
    "plot_generation",
    "plot_linear_theory",
    "plot_lorenz",
    "plot_multitask",
    "plot_parcel_map",
    "plot_few_shot",
    "plot_predictions",
    "plot_psth",
    "plot_rank_sweep",
    "plot_raster",
    "plot_trial",
    "plot_width_sweep",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))
