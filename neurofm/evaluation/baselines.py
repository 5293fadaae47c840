"""Baselines scored on the same points as the models: every result table has a floor.

Each baseline is fitted on the train split of the same recordings the model is scored on, tuned
on their valid split (early stopping, a small hyperparameter search; budgets are the evaluate
step's ``baseline_options``), and scored on :func:`~neurofm.data.targets.evaluation_targets` of
the same split:

- beside POYO, by R^2: the spike decoders :class:`~neurofm.baselines.decoders.WienerFilter`
  and :class:`~neurofm.baselines.decoders.GRUDecoder` (:func:`score_baselines`, which also
  says what each search chose per session);
- beside SAMBA, by per-parcel r, R^2 and MSE: the EEG-informed ridge
  :class:`~neurofm.baselines.hrf_ridge.HRFRidge` (:func:`evaluate_ridge`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurofm import display
from neurofm.data.catalog import Catalog
from neurofm.errors import NeuroFMError
from neurofm.specs import BaselineOptions

__all__ = [
    "SAMBA_BASELINES",
    "SPIKE_BASELINES",
    "BaselineScores",
    "evaluate_baselines",
    "evaluate_ridge",
    "score_baselines",
]

#: Baselines for spikes -> behaviour (POYO), by the name a pipeline's evaluate step uses.
SPIKE_BASELINES = ("wiener", "gru")
#: Baselines for EEG -> fMRI (SAMBA).
SAMBA_BASELINES = ("ridge",)

_LABELS = {"wiener": "Wiener", "gru": "GRU"}


@dataclass
class BaselineScores:
    """R^2 of the spike baselines per session, and how each was tuned there.

    Attributes
    ----------
    r2 : dict
        Table label (``Wiener``, ``GRU``) -> recording id -> R^2.
    tuning : dict
        Table label -> recording id -> what the search chose (``describe``: the choice in a
        few words, then the decoder's :meth:`tuning` values: ``alpha`` and ``history_s``;
        ``hidden``, ``lr``, ``best_step``, ``steps``, ``early_stopped``...).
    searches : dict
        Table label -> the search and stopping rule, in one line.
    seconds : dict
        Table label -> seconds spent fitting and scoring.
    background : bool
        Whether they were fitted in a second process while the model trained
        (:mod:`neurofm.evaluation.background`).
    """

    r2: dict[str, dict[str, float]] = field(default_factory=dict)
    tuning: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    searches: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    background: bool = False

    def __repr__(self) -> str:
        means = ", ".join(
            f"{label} {display.number(sum(per.values()) / len(per) if per else float('nan'))}"
            for label, per in self.r2.items()
        )
        sessions = {rid for per in self.r2.values() for rid in per}
        return (
            f"<BaselineScores: mean R^2 {means or 'none'} over "
            f"{display.count(len(sessions), 'session')}>"
        )

    def _repr_html_(self) -> str:
        labels = list(self.r2)
        sessions = list(dict.fromkeys(rid for per in self.r2.values() for rid in per))
        rows = [
            [rid, *(display.number(self.r2[b].get(rid, float("nan"))) for b in labels)]
            for rid in sessions
        ]
        return display.html_table("BaselineScores: R^2 per session", rows, ["session", *labels])

    def lines(self) -> list[str]:
        """How each baseline was tuned, for under the results table::

        GRU (3 sessions, 74.1 s): hidden/lr in {64/3e-3, 128/3e-3}, 150 steps each, ...
          sub-S0_ses-1: hidden 128, lr 3e-3, best at step 500 of 700, early-stopped (...)
        """
        out = []
        where = ", while the model trained" if self.background else ""
        for label, per_session in self.tuning.items():
            n = len(per_session)
            out.append(
                f"{label} ({n} session{'s' if n != 1 else ''}, {self.seconds[label]:.1f} s"
                f"{where}): {self.searches[label]}"
            )
            for rid, t in per_session.items():
                valid = t.get("valid_r2")
                valid_text = f" (valid R^2 {valid:.3f})" if valid is not None else ""
                out.append(f"  {rid}: {t['describe']}{valid_text}")
        return out

    def to_json(self) -> dict[str, Any]:
        """``{label: {"search", "seconds", "sessions": {id: {"r2", "describe", ...}}}}``."""
        return {
            label: {
                "search": self.searches[label],
                "seconds": round(self.seconds[label], 3),
                "sessions": {
                    rid: {"r2": self.r2[label][rid], **t} for rid, t in per_session.items()
                },
            }
            for label, per_session in self.tuning.items()
        }


def _decoder(name: str, options: BaselineOptions, progress: bool) -> Any:
    """A spike baseline configured by the spec's options."""
    from neurofm.baselines.decoders import GRUDecoder, WienerFilter
    from neurofm.baselines.features import Binning

    if name == "wiener":
        w = options.wiener
        return WienerFilter(Binning(bin_size=w.bin_size), alphas=w.alphas, lags=w.lags)
    g = options.gru
    return GRUDecoder(
        candidates=[(c.hidden, c.lr) for c in g.candidates],
        max_steps=g.max_steps,
        search_steps=g.search_steps,
        eval_every=g.eval_every,
        patience=g.patience,
        lr_patience=g.lr_patience,
        batch_size=g.batch_size,
        seed=g.seed,
        progress=progress,
    )


def score_baselines(
    catalog: str | Path,
    target: str,
    split: str,
    names: list[str],
    sessions: list[str] | None = None,
    options: BaselineOptions | None = None,
    progress: bool = True,
) -> BaselineScores:
    """Fit the named spike baselines on the train split, tune them on the valid split, and
    score them on ``split`` like POYO.

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
    options : BaselineOptions, optional
        Budgets and searches (default: :class:`~neurofm.specs.BaselineOptions`'s defaults).
    progress : bool
        Progress of the GRU's training (a bar on a terminal, lines in a log).

    Returns
    -------
    BaselineScores
        R^2 per session, the tuning chosen per session, the searches and their time.

    Raises
    ------
    NeuroFMError
        A name that is not a spike baseline.
    """
    wrong = sorted(set(names) - set(_LABELS))
    if wrong:
        raise NeuroFMError(
            f"evaluate: baselines {wrong} are not spike baselines (expected {sorted(_LABELS)})"
        )
    options = options or BaselineOptions()
    cat = Catalog(catalog)
    recordings = [cat.open(rid) for rid in (sessions or cat.ids)]
    out = BaselineScores()
    try:
        for name in names:
            label, decoder = _LABELS[name], _decoder(name, options, progress)
            t0 = time.perf_counter()
            out.r2[label] = decoder.fit(recordings, target).evaluate(recordings, target, split)
            out.seconds[label] = time.perf_counter() - t0
            out.searches[label] = decoder.search_description()
            out.tuning[label] = {
                rec.id: {"describe": decoder.describe(rec.id), **decoder.tuning(rec.id)}
                for rec in recordings
            }
        return out
    finally:
        for rec in recordings:
            rec.close()


def evaluate_baselines(
    catalog: str | Path,
    target: str,
    split: str,
    names: list[str],
    sessions: list[str] | None = None,
    options: BaselineOptions | None = None,
) -> dict[str, dict[str, float]]:
    """R^2 of the named spike baselines per session (:func:`score_baselines` without the
    tuning record).

    Returns
    -------
    dict
        Table label (``Wiener``, ``GRU``) -> recording id -> R^2.
    """
    return score_baselines(catalog, target, split, names, sessions, options).r2


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
