"""A new session in one call: load a pretrained POYO, adapt it to a recording, decode.

::

    import neurofm

    model = neurofm.load_pretrained("runs/poyo/last.ckpt")      # or a registered name
    adapted = model.adapt("new_session.nwb", trials=20)         # unit identification
    print(adapted.card.scores["adaptation"])                    # R^2 on the other trials
    vel = adapted.predict("new_session.nwb")                    # a RegularSeries
    adapted.save("adapted.ckpt")

:meth:`PretrainedPOYO.adapt` reads the file with the same reader as ingestion, extends the
vocabularies (new units are keyed ``"<recording id>/<unit id>"``, so they never clash with the
pretrained ones; a session the model has already seen keeps its rows), trains what the mode
says on the first ``trials`` trials (:mod:`neurofm.training.finetune`'s recipe), scores the
stitched predictions on the remaining trials and records that score in the adapted model's card.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import tempfile
import warnings
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurofm import display
from neurofm.atomic import atomic_path
from neurofm.data.catalog import Catalog
from neurofm.data.recording import Recording
from neurofm.data.sampling import SequentialWindowSampler
from neurofm.data.signals import Intervals, IrregularSeries, RegularSeries
from neurofm.errors import NeuroFMError, check_counts
from neurofm.evaluation.poyo import EvalResult, evaluate_poyo
from neurofm.evaluation.stitching import stitch
from neurofm.models.poyo import POYO
from neurofm.pretrained.card import ModelCard, read_card, scores_text
from neurofm.pretrained.errors import CheckpointError, NoUnitsError, TargetMismatchError
from neurofm.pretrained.registry import resolve
from neurofm.tokenizers.spikes import (
    ClassEncoder,
    SpikeTokenizer,
    TargetScaler,
    collate,
    unit_keys,
)
from neurofm.training import card as mc
from neurofm.training.checkpoints import checkpoint_format, load_checkpoint, seal
from neurofm.training.finetune import (
    DEFAULT_LR,
    GRADUAL_BACKBONE_LR,
    GradualUnfreezing,
    set_trainable,
)
from neurofm.training.poyo import CHECKPOINT_FORMAT, TrainConfig, fit_poyo, load_poyo

log = logging.getLogger(__name__)

__all__ = ["PretrainedPOYO", "load_pretrained"]

#: Modes of :meth:`PretrainedPOYO.adapt` (see :mod:`neurofm.training.finetune`).
ADAPT_MODES = ("unit-id", "full", "gradual")


def load_pretrained(path_or_name: str | os.PathLike[str]) -> PretrainedPOYO:
    """Load a pretrained POYO from a checkpoint file or a registered name.

    Parameters
    ----------
    path_or_name : str or path-like
        A POYO checkpoint (``neurofm train``'s ``last.ckpt``, an adapted ``adapted.ckpt``) or
        a name of :data:`neurofm.pretrained.REGISTRY` (``"poyo-tiny-synthetic"``).

    Returns
    -------
    PretrainedPOYO
        The model, its target encoding, training settings and model card (a card made up
        from the config, with ``card_version`` 0, for checkpoints written before cards).

    Raises
    ------
    CheckpointError
        A missing file or unknown name, a file that is not a checkpoint (text, HDF5...), a
        damaged one, or the checkpoint of another model (e.g. SAMBA).
    """
    path = resolve(path_or_name)
    fmt = checkpoint_format(path)
    if fmt is None:
        try:
            ckpt = load_checkpoint(path)  # its own error says what the file is not
        except NeuroFMError as exc:
            raise CheckpointError(str(exc)) from None
        keys = sorted(map(str, ckpt)) if isinstance(ckpt, dict) else []
        raise CheckpointError(
            f"{path}: not a neurofm checkpoint (no 'neurofm' section with a format; top-level "
            f"keys {keys[:6]}); a torch_brain POYO checkpoint loads with "
            "neurofm.pretrained.from_torch_brain"
        )
    if fmt != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path}: neurofm.format is {fmt!r}: the checkpoint of another model, not a POYO "
            f"({CHECKPOINT_FORMAT!r}); load_pretrained, adapt and predict need a POYO checkpoint"
        )
    try:
        model, encoding, config = load_poyo(path)
        meta = load_checkpoint(path)["neurofm"]
    except NeuroFMError as exc:
        raise CheckpointError(str(exc)) from None
    card = read_card(meta, path) or _card_of_old_checkpoint(model, encoding, config, meta)
    return PretrainedPOYO(model, encoding, config, card, path=path)


def _card_of_old_checkpoint(
    model: POYO, encoding: Any, config: TrainConfig, meta: dict[str, Any]
) -> ModelCard:
    """What can be said of a checkpoint written before cards: config, vocabulary, settings."""
    return ModelCard(
        card_version=0,
        config=dataclasses.asdict(model.config),
        target=mc.target_section(config.target, encoding),
        vocabulary=mc.vocabulary_section(model),
        training={"settings": mc.plain(config), "total_steps": meta.get("total_steps")},
    )


@dataclass
class PretrainedPOYO:
    """A POYO with everything needed to adapt it and decode with it.

    Attributes
    ----------
    model : POYO
        The network, with its unit and session vocabularies.
    encoding : TargetScaler or ClassEncoder
        The target's z-scoring (or classes), fitted on the training data.
    config : TrainConfig
        How it was trained; ``config.target`` is what it decodes.
    card : ModelCard
        Its model card.
    path : Path or None
        The checkpoint it was loaded from (None for a model adapted in memory).
    evaluation : EvalResult or None
        After :meth:`adapt`: the stitched predictions and score on the trials not used for
        adaptation.
    """

    model: POYO
    encoding: TargetScaler | ClassEncoder
    config: TrainConfig
    card: ModelCard
    path: Path | None = None
    evaluation: EvalResult | None = field(default=None, repr=False)

    @property
    def target(self) -> Any:
        """What the model decodes (a signal name such as ``"hand_vel"``)."""
        return self.config.target

    def __repr__(self) -> str:  # one line: the network and the card are a print away
        c = self.model.config
        where = self.path.name if self.path is not None else "in memory"
        return (
            f"<PretrainedPOYO {where}: dim {c.dim}, depth {c.depth}; "
            f"{display.count(len(self.model.unit_emb.vocab), 'unit')}, "
            f"{display.count(len(self.model.session_emb.vocab), 'session')}; decodes "
            f"{self.target}; scores: {scores_text(self.card.scores)}>"
        )

    # ---- adapt --------------------------------------------------------------------------

    def adapt(
        self,
        recording: str | os.PathLike[str] | Recording,
        trials: int = 20,
        mode: str = "unit-id",
        epochs: int = 100,
        out: str | os.PathLike[str] | None = None,
        catalog: str | os.PathLike[str] | Catalog | None = None,
        *,
        lr: float | None = None,
        batch_size: int = 8,
        unfreeze_epoch: int | None = None,
        seed: int = 0,
        progress: bool = False,
        accelerator: str = "auto",
        devices: int = 1,
        precision: str | int = "32-true",
    ) -> PretrainedPOYO:
        """Adapt to a new session from its first ``trials`` trials; score it on the rest.

        Parameters
        ----------
        recording : str, path-like or Recording
            An NWB file (read like ``neurofm ingest`` reads it), a neurofm recording (``.h5``),
            a :class:`~neurofm.data.Recording`, or the id of a recording of ``catalog``.
        trials : int
            Labelled trials to adapt on: the first ``trials`` of its ``trials`` table, in time
            order. The remaining trials (at least one) are the held-out evaluation.
        mode : {"unit-id", "full", "gradual"}
            ``unit-id``: only the new unit and session embeddings train (backbone frozen);
            ``full``: everything trains; ``gradual``: unit-id, then everything from
            ``unfreeze_epoch`` (default half the epochs).
        epochs : int
            Passes over the adaptation trials (100: 30 leave the embeddings half-learned).
        out : path-like, optional
            Folder for ``adapted.ckpt`` (written atomically) and the training logs; default:
            nothing is written (the logs go to a temporary folder).
        catalog : path-like or Catalog, optional
            Where ``recording`` is looked up when it is a recording id.
        lr : float, optional
            Peak learning rate; default the mode's measured best
            (:data:`neurofm.training.finetune.DEFAULT_LR`: unit-id 0.03, full 0.001).
        batch_size, seed : int, int
            Adaptation settings.
        progress : bool
            Show Lightning's progress bar.
        accelerator, devices, precision : str, int, str
            Lightning's.

        Returns
        -------
        PretrainedPOYO
            The adapted model: vocabularies extended by the new session and its units, its
            card with ``adaptation``, ``adapted_from`` and ``scores["adaptation"]`` (stitched
            R^2 on the held-out trials), and :attr:`evaluation`.

        Raises
        ------
        TargetMismatchError
            The recording lacks the target, or it has another number of dimensions than the
            readout.
        NoUnitsError
            The recording has no units or no spikes.
        InvalidDataError
            No ``trials`` table, or too few trials for ``trials`` plus a held-out one.
        """
        if mode not in ADAPT_MODES:
            raise NeuroFMError(f"mode must be one of {', '.join(ADAPT_MODES)}; got {mode!r}")
        # before the recording is read: a bad count is the caller's, whatever the file holds
        check_counts("adapt", trials=trials, epochs=epochs, batch_size=batch_size)
        if isinstance(self.encoding, ClassEncoder) or not isinstance(self.target, str):
            raise NeuroFMError(
                f"adapt decodes a behaviour series; this model's target is {self.target!r}"
            )
        with ExitStack() as stack:
            rec, where, cat_path = _resolve_recording(recording, catalog, stack)
            self._check_recording(rec, where)
            rec = self._distinct_session(rec, where, renamable=cat_path is None)
            train, held_out = _split_trials(rec, where, trials)
            if cat_path is None:  # a file or an in-memory recording: a catalog of one
                folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="neurofm-")))
                cat_path = folder / "catalog"
                Catalog(cat_path, create=True).add(rec if not rec.is_lazy else rec.load())
            workdir = (
                Path(out) / "adapt-logs"
                if out is not None
                else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="neurofm-")))
            )
            model = copy.deepcopy(self.model)
            unit_ids = [str(u) for u in rec["spikes"].units.ids]
            keys = unit_keys(rec.id, unit_ids)
            # the new rows' initial values come from torch's global generator: seeded, an
            # adaptation does not depend on what ran before it (in a notebook, say)
            torch.manual_seed(seed)
            new_units = model.unit_emb.extend(keys)
            model.session_emb.extend([rec.id])
            trainable = set_trainable(model, "full" if mode == "full" else "unit-id")
            log.info("adapting (%s) to %s: training %s", mode, rec.id, ", ".join(trainable))
            cfg = dataclasses.replace(
                self.config,
                epochs=epochs,
                batch_size=batch_size,
                lr=DEFAULT_LR[mode] if lr is None else lr,
                seed=seed,
                recordings=[rec.id],
                flat_fraction=0.5,
            )
            callbacks = (
                [
                    GradualUnfreezing(
                        unfreeze_epoch if unfreeze_epoch is not None else epochs // 2,
                        backbone_lr=GRADUAL_BACKBONE_LR,
                    )
                ]
                if mode == "gradual"
                else []
            )
            torch.manual_seed(seed)
            # no validation loader on purpose (see valid_domains below): not worth a warning
            stack.enter_context(warnings.catch_warnings())
            warnings.filterwarnings("ignore", "Total length of `DataLoader`", UserWarning)
            module, _ = fit_poyo(
                model,
                self.encoding,
                cat_path,
                cfg,
                workdir,
                train_domains={rec.id: train},
                # no validation pass each epoch: the held-out trials are scored once, after
                valid_domains={rec.id: Intervals(np.zeros(0), np.zeros(0), name="valid_domain")},
                callbacks=callbacks,
                progress=progress,
                accelerator=accelerator,
                devices=devices,
                precision=precision,
                # nothing resumes an adaptation: last.ckpt once, when it ends, instead of after
                # each of its (short) epochs (~15 ms each: ~1.5 s of the demo's 100)
                checkpoint_every_epoch=False,
            )
            model.cpu()
            for p in model.parameters():
                p.requires_grad = True
            evaluation = evaluate_poyo(
                model, self.encoding, cat_path, self.target, domains={rec.id: held_out}
            )
            score = evaluation.sessions[rec.id].r2 if rec.id in evaluation.sessions else np.nan
            card = self._adapted_card(model, rec, where, mode, trials, module, new_units, keys)
            # The pretrained scores still describe an adapted model whose backbone is the same
            # (unit-id); once the backbone trained too (full, gradual) they are another model's.
            kept = self.card.scores if mode == "unit-id" else {}
            card.scores = {
                **{k: v for k, v in kept.items() if k != "adaptation"},
                "adaptation": {"r2": float(score), "n": len(held_out)},
            }
            adapted = PretrainedPOYO(model, self.encoding, cfg, card, evaluation=evaluation)
            if out is not None:
                adapted.path = adapted.save(Path(out) / "adapted.ckpt")
                # the trainer's own copy (no card of the adaptation): adapted.ckpt replaces it
                (workdir / "last.ckpt").unlink(missing_ok=True)
        log.info("adapted to %s: held-out R^2 %.3f on %d trials", rec.id, score, len(held_out))
        return adapted

    def _check_recording(self, rec: Recording, where: str) -> None:
        target, dim = self.target, self.model.config.dim_out
        if target not in rec:
            raise TargetMismatchError(
                f"{where}: no target signal {target!r} (the checkpoint decodes {target!r}); "
                f"the recording has {sorted(rec.signals)}"
            )
        names = getattr(rec[target], "channels", None)
        channels = [] if names is None else [str(c) for c in names]
        if len(channels) != dim:
            want = self.card.target.get("channels") or []
            raise TargetMismatchError(
                f"{where}: {target}.channels: {len(channels)} dimension(s) {channels} but the "
                f"checkpoint's readout predicts {dim}" + (f" ({want})" if want else "")
            )
        _check_units(rec, where, 0.0, rec.duration)

    def _adapted_card(
        self,
        model: POYO,
        rec: Recording,
        where: str,
        mode: str,
        trials: int,
        module: Any,
        new_units: list[str],
        keys: list[str],
    ) -> ModelCard:
        card = copy.deepcopy(self.card)
        card.card_version = mc.CARD_VERSION
        card.created = mc.now()
        card.versions = mc.versions()
        card.vocabulary = mc.vocabulary_section(model)
        card.target = {
            **card.target,
            **_non_empty(mc.target_section(self.target, self.encoding, rec)),
        }
        entry = mc.recording_entry(rec.id, rec)
        data = dict(card.data)
        data["recordings"] = [r for r in data.get("recordings", []) if r.get("id") != rec.id] + [
            entry
        ]
        card.data = mc.data_section(str(data.get("catalog", "")), data["recordings"])
        # how this model was trained last: the adaptation (pretraining's is in adapted_from)
        card.training = {
            "settings": mc.plain(module.cfg),
            "total_steps": int(module.total_steps),
            "epoch": int(module.current_epoch),
            "epochs_done": int(module.current_epoch),  # fitting has ended: all of them counted
            "global_step": int(module.global_step),
            "mode": mode,
        }
        card.adapted_from = self.card.summary()
        card.adaptation = {
            "recording": rec.id,
            "source": where,
            "mode": mode,
            "trials": trials,
            "epochs": module.cfg.epochs,
            "new_units": len(new_units),
            "kept_units": len(keys) - len(new_units),
        }
        return card

    # ---- predict ------------------------------------------------------------------------

    @torch.no_grad()
    def predict(
        self,
        recording: str | os.PathLike[str] | Recording,
        catalog: str | os.PathLike[str] | Catalog | None = None,
        *,
        batch_size: int = 32,
        device: str | torch.device = "cpu",
    ) -> RegularSeries | IrregularSeries:
        """Decode the behaviour of a whole recording, stitched over overlapping windows.

        Parameters
        ----------
        recording : str, path-like or Recording
            As for :meth:`adapt`; its session must be in the model's vocabulary (adapt first).
        catalog : path-like or Catalog, optional
            Where ``recording`` is looked up when it is a recording id.
        batch_size : int
            Windows per forward pass.
        device : str or torch.device
            Where the model runs.

        Returns
        -------
        RegularSeries or IrregularSeries
            The decoded target in its own units, named like it: at the recording's own
            target timestamps when it has the target (a RegularSeries for a regular one),
            else on a regular grid at the training target's rate from time 0. Points no
            window covers are NaN.

        Raises
        ------
        NeuroFMError
            The session or some units are not in the model's vocabulary.
        NoUnitsError
            The recording has no units or no spikes.
        """
        if isinstance(self.encoding, ClassEncoder) or not isinstance(self.target, str):
            raise NeuroFMError(
                f"predict decodes a behaviour series; this model's target is {self.target!r}"
            )
        with ExitStack() as stack:
            rec, where, _ = _resolve_recording(recording, catalog, stack)
            _check_units(rec, where, 0.0, rec.duration)
            rec = self._distinct_session(rec, where, renamable=True)
            self._check_vocabulary(rec, where)
            target, dim = self.target, self.model.config.dim_out
            channels = list(self.card.target.get("channels") or [])
            unit = str(self.card.target.get("unit") or "")
            rate = self.card.target.get("rate")
            signal = rec[target].load() if target in rec else None  # lazy: the samples
            if signal is not None:
                times = np.asarray(signal.timestamps, dtype=np.float64)
                names = getattr(signal, "channels", None)
                channels = channels if names is None else [str(c) for c in names]
                unit = str(getattr(signal, "unit", unit) or unit)
            elif rate:
                times = np.arange(0.0, rec.duration, 1.0 / float(rate))
            else:
                raise TargetMismatchError(
                    f"{where}: no {target!r} signal to align the predictions to, and the model "
                    "card gives no target rate to make a time grid"
                )
            values = self._predict_at(rec, times, batch_size, device)
            name = str(target)
            if len(channels) != dim:
                channels = [str(i) for i in range(dim)]
            if signal is not None and getattr(signal, "kind", "") == "regular":
                return RegularSeries(
                    values, signal.rate, signal.start, channels, name=name, unit=unit
                )
            if signal is None:
                return RegularSeries(values, float(rate), 0.0, channels, name=name, unit=unit)
            return IrregularSeries(times, values, channels, name=name, unit=unit)

    def session_id(self, rec: Recording) -> str:
        """The id this model knows ``rec``'s session by.

        Recording ids (``sub-<subject>_ses-<session>``) are unique within a dataset, not across
        datasets: a new file may carry the id of a session the model was trained on. When the
        model card holds that id with other data (another sha256), the new session is
        ``<id>@<first 8 hex digits of its sha256>``, so its units never take the other
        session's embeddings; a recording without a checksum keeps its id.
        """
        sha = rec.provenance.sha256
        trained = {
            str(r.get("id")): str(r.get("sha256") or "")
            for r in self.card.data.get("recordings", [])
        }
        if sha and trained.get(rec.id) and trained[rec.id] != sha:
            return f"{rec.id}@{sha[:8]}"
        return rec.id

    def _distinct_session(self, rec: Recording, where: str, renamable: bool) -> Recording:
        sid = self.session_id(rec)
        if sid == rec.id:
            return rec
        if not renamable:
            raise NeuroFMError(
                f"{where}: the model was trained on another session with the id {rec.id!r} "
                f"(other data: another sha256); adapt from the recording's file instead, which "
                f"names this session {sid!r}"
            )
        # a warning when the session is new to the model; once adapted, predicting on it
        # just follows the rule
        log.log(
            logging.INFO if sid in self.model.session_emb else logging.WARNING,
            "%s: the model was trained on another session with the id %r; this one is %r",
            where, rec.id, sid,
        )  # fmt: skip
        full = rec.load() if rec.is_lazy else rec
        return Recording(
            sid,
            full.signals,
            duration=full.duration,
            metadata=full.metadata,
            provenance=full.provenance,
            absolute_start=full.absolute_start,
        )

    def _check_vocabulary(self, rec: Recording, where: str) -> None:
        if rec.id not in self.model.session_emb:
            known = self.model.session_emb.vocab
            base = rec.id.split("@")[0]
            kin = [k for k in known if k == base or k.startswith(base + "@")]
            if kin:  # the model knows this recording's id from a file with other content
                sha = rec.provenance.sha256
                raise NeuroFMError(
                    f"{where}: the model knows recording {base!r} as session "
                    f"{', '.join(repr(k) for k in kin)}, made from a file with other content "
                    f"than this one (sha256 {sha[:8] if sha else 'unknown'}...): a session is "
                    "its data, not its name. Predict on the file the model was adapted on, or "
                    "adapt the model to this one (neurofm adapt)"
                )
            raise NeuroFMError(
                f"{where}: session {rec.id!r} is not in the model's vocabulary ({len(known)} "
                f"sessions, e.g. {', '.join(known[:3])}): adapt the model to it first "
                "(model.adapt(...), neurofm adapt)"
            )
        keys = unit_keys(rec.id, [str(u) for u in rec["spikes"].units.ids])
        missing = [k for k in keys if k not in self.model.unit_emb]
        if missing:
            raise NeuroFMError(
                f"{where}: spikes.units: {len(missing)} of {len(keys)} units are not in the "
                f"model's vocabulary (e.g. {missing[:3]}): adapt the model to this recording"
            )

    def _predict_at(
        self, rec: Recording, times: np.ndarray, batch_size: int, device: str | torch.device
    ) -> np.ndarray:
        """Predictions (T, D) in the target's units at ``times`` (seconds of ``rec``)."""
        c = self.model.config
        tokenizer = _QueryTokenizer(
            self.model.unit_emb.index,
            self.model.session_emb.index,
            c.window_length,
            c.latent_step,
            c.num_latents_per_step,
            target=self.target,
            scaler=self.encoding,
            query=times,
            dim=c.dim_out,
        )
        span = Intervals(np.array([0.0]), np.array([max(rec.duration, c.window_length)]))
        windows = SequentialWindowSampler({rec.id: span}, c.window_length).windows()
        was_training = self.model.training
        self.model.eval().to(device)
        got_t, got_v = [], []
        try:
            for first in range(0, len(windows), batch_size):
                chunk = windows[first : first + batch_size]
                items = []
                for w in chunk:
                    tokenizer.offset = w.start
                    items.append(tokenizer(rec.window(w.start, w.end, tokenizer.signals)))
                batch = collate(items)
                tensors = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
                pred = self.model(**tensors).float().cpu().numpy()
                mask = batch["output_mask"].numpy()
                rel = batch["output_timestamps"].numpy().astype(np.float64)
                for i, w in enumerate(chunk):
                    got_t.append(rel[i, mask[i]] + w.start)
                    got_v.append(pred[i, mask[i]])
        finally:
            self.model.train(was_training)
        out = np.full((len(times), c.dim_out), np.nan)
        if not got_t or not sum(len(t) for t in got_t):
            return out
        uniq, mean = stitch(np.concatenate(got_t), np.concatenate(got_v))
        idx = np.clip(np.searchsorted(uniq, times), 1, max(1, len(uniq) - 1))
        left = np.abs(uniq[idx - 1] - times) <= np.abs(uniq[np.minimum(idx, len(uniq) - 1)] - times)
        idx = np.where(left, idx - 1, np.minimum(idx, len(uniq) - 1))
        hit = np.abs(uniq[idx] - times) <= 1e-4
        out[hit] = self.encoding.inverse(mean[idx[hit]])
        return out

    # ---- save ---------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a POYO checkpoint (with this card) that :func:`load_pretrained`, ``neurofm
        evaluate`` and fine-tuning load like any other; written atomically, sealed with the
        weights' digest.

        Returns
        -------
        Path
            ``path``.
        """
        path = Path(path)
        state = {
            f"model.{k}": v.detach().cpu() if torch.is_tensor(v) else v
            for k, v in self.model.state_dict().items()
        }
        checkpoint = {
            "state_dict": state,
            "neurofm": {
                "format": CHECKPOINT_FORMAT,
                "model_config": dataclasses.asdict(self.model.config),
                "train_config": mc.plain(self.config),
                "scaler": self.encoding.to_dict(),
                "total_steps": int(self.card.training.get("total_steps") or 1),
                mc.CARD_KEY: self.card.to_dict(),
            },
        }
        seal(checkpoint)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        return path


def _non_empty(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v not in (None, "", [])}


@dataclass
class _QueryTokenizer(SpikeTokenizer):
    """POYO's tokenizer with outputs queried at given times, not read from the target: a
    recording to decode need not hold the behaviour."""

    query: np.ndarray = field(default_factory=lambda: np.zeros(0))
    dim: int = 1
    offset: float = 0.0  # the window's start in the recording (set before each call)

    @property
    def signals(self) -> tuple[str, ...]:
        return ("spikes",)  # outputs come from the query times, not the target

    def outputs(self, window: Recording) -> dict[str, Any]:
        lo, hi = self.offset, self.offset + window.duration
        t = self.query[(self.query >= lo) & (self.query < hi)] - lo
        return {
            "output_timestamps": t,
            "output_values": np.zeros((len(t), self.dim), dtype=np.float32),
            "output_weights": np.ones(len(t), dtype=np.float32),
        }


def _resolve_recording(
    recording: Any, catalog: Any, stack: ExitStack
) -> tuple[Recording, str, Path | None]:
    """``(recording, its name for messages, the catalog holding it or None)``."""
    if isinstance(recording, Recording):
        return recording, f"recording {recording.id!r}", None
    text = str(recording)
    if catalog is not None:
        cat = catalog if isinstance(catalog, Catalog) else Catalog(catalog)
        if text in cat:
            rec = stack.enter_context(cat.open(text))
            return rec, f"{cat.path}: {text}", cat.path
    path = Path(text)
    if path.is_dir():
        raise NeuroFMError(
            f"{path}: a folder, not a recording file; for a recording of a catalog, give its id "
            f"and the catalog (neurofm adapt CKPT RECORDING_ID --catalog {path})"
        )
    if not path.is_file():
        where = f" (nor a recording of catalog {Path(str(getattr(catalog, 'path', catalog)))})"
        raise NeuroFMError(f"{path}: no such recording file{where if catalog is not None else ''}")
    if path.suffix == ".h5":
        rec = stack.enter_context(Recording.open(path))
    else:
        from neurofm.readers import read  # the reader `neurofm ingest` uses for this file

        rec = stack.enter_context(read(path))  # closed (staging files too) when done
    if "spikes" not in rec:
        raise NoUnitsError(
            f"{path}: spikes: the recording has no spiking units (signals {sorted(rec.signals)});"
            " POYO decodes from spikes"
        )
    return rec, str(path), None


def _check_units(rec: Recording, where: str, start: float, end: float) -> None:
    """Units and at least one spike between ``start`` and ``end``, or a clear error."""
    if "spikes" not in rec or not len(rec["spikes"].units):
        raise NoUnitsError(
            f"{where}: spikes.units: the recording has no units; POYO decodes from spikes"
        )
    spikes = rec["spikes"]
    whole = start <= 0 and end >= rec.duration  # then its length says it, without reading
    n = len(spikes) if whole else len(spikes.window(start, end).timestamps) if end > start else 0
    if not n:
        raise NoUnitsError(
            f"{where}: spikes: no unit fired a spike in [{start:g}, {end:g}) s; there is "
            "nothing to decode from"
        )


def _split_trials(rec: Recording, where: str, k: int) -> tuple[Intervals, Intervals]:
    """The first ``k`` trials (in time order) and the rest."""
    from neurofm.errors import InvalidDataError

    if "trials" not in rec:
        raise InvalidDataError(
            f"{where}: trials: the recording has no trials table; adapt uses its first trials "
            "for training and the rest for evaluation"
        )
    table = rec["trials"].load()
    n = len(table)
    check_counts("adapt", trials=k)
    if k >= n:
        raise InvalidDataError(
            f"{where}: trials: asked to adapt on {k} trials but the recording has {n}; "
            "at least one must be left to evaluate on"
        )
    order = np.argsort(table.start, kind="stable")
    train = table.take(order[:k])
    rest = table.take(order[k:])
    train_dom = Intervals(train.start.copy(), train.end.copy(), name="train_domain")
    rest_dom = Intervals(rest.start.copy(), rest.end.copy(), name="test_domain")
    spikes = rec["spikes"]
    if not any(
        len(spikes.window(s, e).timestamps)
        for s, e in zip(train_dom.start, train_dom.end, strict=True)
    ):
        raise NoUnitsError(
            f"{where}: spikes: no unit fired a spike during the first {k} trials; nothing to "
            "adapt on"
        )
    return train_dom, rest_dom
