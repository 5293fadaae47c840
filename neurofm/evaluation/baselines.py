"""Baselines scored on the same points as the models: every result table has a floor.

Each baseline is fitted on the train split of the same recordings the model is scored on, and
scored on :func:`~neurofm.data.targets.evaluation_targets` of the same split:

- beside POYO, by R^2: the spike decoders :class:`~neurofm.baselines.decoders.WienerFilter`
  and :class:`~neurofm.baselines.decoders.GRUDecoder` (:func:`evaluate_baselines`);
- beside SAMBA, by per-parcel r, R^2 and MSE: the EEG-informed ridge
  :class:`~neurofm.baselines.hrf_ridge.HRFRidge` (:func:`evaluate_ridge`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from neurofm.data.catalog import Catalog
from neurofm.errors import NeuroFMError

__all__ = ["SAMBA_BASELINES", "SPIKE_BASELINES", "evaluate_baselines", "evaluate_ridge"]

#: Baselines for spikes -> behaviour (POYO), by the name a pipeline's evaluate step uses.
SPIKE_BASELINES = ("wiener", "gru")
#: Baselines for EEG -> fMRI (SAMBA).
SAMBA_BASELINES = ("ridge",)


def evaluate_baselines(
    catalog: str | Path,
    target: str,
    split: str,
    names: list[str],
    sessions: list[str] | None = None,
) -> dict[str, dict[str, float]]:
    """Fit the named spike baselines on the train split and score them like POYO.

    Parameters
    ----------
    catalog : str or Path
        Catalog folder.
    target : str
        Behaviour signal to decode.
    split : str
        Split to score.
    names : list of str
        Baselines among :data:`SPIKE_BASELINES` (``wiener``, ``gru``).
    sessions : list of str, optional
        Recordings to fit and score (default all; POYO passes the sessions it knows).

    Returns
    -------
    dict
        Table label (``Wiener``, ``GRU``) -> recording id -> R^2.

    Raises
    ------
    NeuroFMError
        A name that is not a spike baseline.
    """
    from neurofm.baselines.decoders import GRUDecoder, WienerFilter

    classes = {"wiener": ("Wiener", WienerFilter), "gru": ("GRU", GRUDecoder)}
    wrong = sorted(set(names) - set(classes))
    if wrong:
        raise NeuroFMError(
            f"evaluate: baselines {wrong} are not spike baselines (expected {sorted(classes)})"
        )
    cat = Catalog(catalog)
    recordings = [cat.open(rid) for rid in (sessions or cat.ids)]
    try:
        out = {}
        for name in names:
            label, cls = classes[name]
            out[label] = cls().fit(recordings, target).evaluate(recordings, target, split)
        return out
    finally:
        for rec in recordings:
            rec.close()


def evaluate_ridge(
    catalog: str | Path, split: str, *, eeg: str = "eeg", bold: str = "bold"
) -> dict[str, dict[str, Any]]:
    """Fit :class:`~neurofm.baselines.hrf_ridge.HRFRidge` on every recording's train domain
    (pooled) and score it on ``split``, as SAMBA is scored.

    Parameters
    ----------
    catalog : str or Path
        Catalog of EEG-fMRI recordings with split domains.
    split : str
        Split to score.
    eeg, bold : str
        Names of the EEG and BOLD signals (a SAMBA checkpoint's training config has them).

    Returns
    -------
    dict
        Recording id -> ``r_mean``, ``r_sd``, ``r2``, ``mse``, ``r_per_parcel``, ``n_samples``.
    """
    from neurofm.baselines.hrf_ridge import HRFRidge

    cat = Catalog(catalog)
    recs = [cat.open(rid) for rid in cat.ids]
    try:
        return HRFRidge(eeg=eeg, target=bold).fit(recs).evaluate(recs, split)
    finally:
        for rec in recs:
            rec.close()
