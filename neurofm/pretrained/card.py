"""The model card of a POYO checkpoint, typed: what the model is, what it saw, how it scored.

The card is stored as plain values in the checkpoint's ``neurofm`` section (layout in
:mod:`neurofm.training.card`, which writes it at every checkpoint); :class:`ModelCard` reads
it back, renders it for ``neurofm info CKPT`` and writes it again with an adapted model.
Checkpoints written before cards existed have none: :func:`read_card` returns None and
:data:`NO_CARD` is what ``info`` says.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurofm import display
from neurofm.pretrained.errors import CheckpointError
from neurofm.training.card import CARD_KEY, CARD_VERSION, card_summary, plain

__all__ = [
    "CARDS_SINCE",
    "NO_CARD",
    "ModelCard",
    "card_lines",
    "checkpoint_summary",
    "read_card",
    "scores_text",
    "update_card",
]

#: The first neurofm release whose POYO checkpoints carry a card (card format 1); every
#: checkpoint without one was written by an earlier version.
CARDS_SINCE = "0.2.0"
#: What ``neurofm info`` says of a POYO checkpoint without a card.
NO_CARD = f"no model card (written by neurofm < {CARDS_SINCE}, before model cards)"


@dataclass
class ModelCard:
    """A POYO checkpoint's card (card format 1; unknown keys of later formats are kept in
    :attr:`extra` and written back unchanged).

    Attributes
    ----------
    card_version : int
        Layout version (0: made up from an old checkpoint's config, not stored in it).
    model, format : str
        ``POYO`` and the checkpoint format (``neurofm.poyo``).
    created : str
        When the checkpoint was written (UTC, ISO 8601).
    description : str
        Free text, e.g. ``trained on synthetic data only``.
    versions : dict
        ``neurofm``, ``torch``, ``lightning`` and ``python`` versions that wrote it.
    config : dict
        The model's config (:class:`~neurofm.models.poyo.POYOConfig` fields).
    target : dict
        What it decodes: ``name``, ``kind``, ``dim``, ``channels``, ``unit``, ``rate``.
    vocabulary : dict
        ``units`` (count), ``sessions`` (ids), ``units_per_session``.
    training : dict
        ``settings`` (:class:`~neurofm.training.poyo.TrainConfig` fields), ``total_steps``,
        ``epochs_done``, ``global_step``, ``mode`` (``pretrain``, ``unit-id``, ...).
    data : dict
        ``catalog``, ``recordings`` (id, subject, units, dataset card, dandiset id and
        version, asset path, sha256), ``dandisets`` and ``cards``.
    scores : dict
        ``{split: {metric: value}}``: ``valid`` at the last validation, ``adaptation`` (the
        trials not used for adaptation) after :meth:`PretrainedPOYO.adapt`.
    adapted_from : dict or None
        A summary of the card this model was adapted from.
    adaptation : dict or None
        How it was adapted: recording, source, mode, trials, epochs, new and kept units.
    """

    card_version: int = CARD_VERSION
    model: str = "POYO"
    format: str = "neurofm.poyo"
    created: str = ""
    description: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    target: dict[str, Any] = field(default_factory=dict)
    vocabulary: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, Any] = field(default_factory=dict)
    adapted_from: dict[str, Any] | None = None
    adaptation: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = "card") -> ModelCard:
        """Read a card from its stored dict.

        Raises
        ------
        CheckpointError
            ``values`` is not a mapping, or a field has the wrong type (naming ``where`` and
            the field).
        """
        if not isinstance(values, Mapping):
            raise CheckpointError(
                f"{where}: the model card is a {type(values).__name__}, not a dict"
            )
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs: dict[str, Any] = {k: values[k] for k in known if k in values}
        for f in dataclasses.fields(cls):
            if f.name not in kwargs:
                continue
            value, want = kwargs[f.name], f.type
            ok = (
                isinstance(value, int)
                if f.name == "card_version"
                else isinstance(value, str)
                if want == "str"
                else value is None or isinstance(value, Mapping)
            )
            if not ok:
                raise CheckpointError(
                    f"{where}.{f.name}: expected {want}, found {type(value).__name__}"
                )
            if isinstance(value, Mapping):
                kwargs[f.name] = dict(value)
        card = cls(**kwargs)
        card.extra = {k: v for k, v in values.items() if k not in known}
        return card

    def to_dict(self) -> dict[str, Any]:
        """The card as plain values (what a checkpoint stores; JSON-safe)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        out = {k: v for k, v in out.items() if v is not None}
        out.update(self.extra)
        return plain(out)

    @property
    def sessions(self) -> list[str]:
        """Session ids of the model's vocabulary."""
        return list(self.vocabulary.get("sessions", []))

    @property
    def n_units(self) -> int:
        """Units in the model's vocabulary."""
        return int(self.vocabulary.get("units", 0))

    @property
    def recordings(self) -> list[str]:
        """Ids of the recordings it was trained on (pretraining or adaptation)."""
        return [str(r.get("id", "")) for r in self.data.get("recordings", [])]

    def summary(self) -> dict[str, Any]:
        """A short version (kept as ``adapted_from`` by an adapted model's card)."""
        return card_summary(self.to_dict())


def read_card(meta: Mapping[str, Any], path: str | os.PathLike[str]) -> ModelCard | None:
    """The card of a checkpoint's ``neurofm`` section, or None when it has none (old files)."""
    if CARD_KEY not in meta:
        return None
    return ModelCard.from_dict(meta[CARD_KEY], f"{Path(path)}: neurofm.{CARD_KEY}")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def scores_text(scores: Mapping[str, Any]) -> str:
    """A card's scores in a line: ``valid: R^2 0.917; adaptation: R^2 0.936, n 20``."""
    names = {"r2": "R^2", "balanced_accuracy": "balanced accuracy"}
    parts = []
    for split, metrics in scores.items():
        if isinstance(metrics, Mapping):
            shown = [
                f"{names.get(k, k)} {_fmt(v)}" for k, v in metrics.items() if k in names or k == "n"
            ]
            extra = [f"{k} {_fmt(v)}" for k, v in metrics.items() if k not in names and k != "n"]
            parts.append(f"{split}: {', '.join(shown + extra)}")
    return "; ".join(parts) or "none recorded"


def card_lines(card: ModelCard) -> list[str]:
    """The card as indented text lines (``neurofm info CKPT``)."""
    v, c, t, voc, tr, d = (
        card.versions,
        card.config,
        card.target,
        card.vocabulary,
        card.training,
        card.data,
    )
    lines = [
        f"  model card   format {card.card_version}, written {card.created or '?'} by neurofm "
        f"{v.get('neurofm', '?')} (torch {v.get('torch', '?')}, lightning "
        f"{v.get('lightning', '?')}, Python {v.get('python', '?')})"
    ]
    if card.description:
        lines.append(f"  description  {card.description}")
    if c:
        lines.append(
            f"  model        {card.model}: dim {c.get('dim')}, depth {c.get('depth')}, "
            f"{c.get('cross_heads', '?')} cross / {c.get('self_heads', '?')} self-attention "
            f"heads, window {_fmt(c.get('window_length'))} s, latent step "
            f"{_fmt(c.get('latent_step'))} s x {c.get('num_latents_per_step')} latents"
        )
    if t:
        channels = ", ".join(t.get("channels") or []) or "?"
        unit = f"; {t['unit']}" if t.get("unit") else ""
        rate = f", {_fmt(t['rate'])} Hz" if t.get("rate") else ""
        lines.append(
            f"  decodes      {t.get('name')} ({t.get('kind')}, {t.get('dim')} dims: "
            f"{channels}{unit}{rate})"
        )
    if voc:
        per = voc.get("units_per_session", {})
        sessions = voc.get("sessions", [])
        lines.append(
            f"  vocabulary   {voc.get('units')} units, {display.count(len(sessions), 'session')}:"
        )
        lines += [f"                 {s} ({per.get(s, 0)} units)" for s in sessions]
    recs = d.get("recordings", [])
    if recs or d.get("catalog"):
        lines.append(
            f"  trained on   {display.count(len(recs), 'recording')} of catalog "
            f"{d.get('catalog') or '?'}:"
        )
        for r in recs:
            source = (
                f"dandi:{r.get('dandiset_id')}/{r.get('dandiset_version') or '?'} "
                f"{r.get('asset_path') or ''}".rstrip()
                if r.get("dandiset_id")
                else (r.get("source_url") or "local file")
            )
            card_name = f", card {r['dataset_card']}" if r.get("dataset_card") else ""
            lines.append(
                f"                 {r.get('id')}: subject {r.get('subject_id') or '?'}, "
                f"{r.get('n_units')} units, {source}{card_name}"
            )
    if d.get("dandisets"):
        shown = ", ".join(f"{x.get('id')} ({x.get('version') or '?'})" for x in d["dandisets"])
        lines.append(f"  dandisets    {shown}")
    if d.get("cards"):
        lines.append(f"  cards        {', '.join(d['cards'])}")
    if tr:
        s = tr.get("settings", {})
        target = s.get("target")
        epochs = (
            f"{tr['epochs_done']} of {s.get('epochs')} epochs"
            if "epochs_done" in tr
            else f"epoch index {tr.get('epoch', '?')} of {s.get('epochs')} epochs"  # older cards
        )
        lines.append(
            f"  training     {tr.get('mode', '?')}: step {tr.get('global_step', '?')} of "
            f"{tr.get('total_steps', '?')}, {epochs}; batch {s.get('batch_size')}, lr "
            f"{_fmt(s.get('lr'))}, weight decay {_fmt(s.get('weight_decay'))}, unit dropout "
            f"{s.get('unit_dropout')}, seed {s.get('seed')}"
            + (f", target {target}" if target else "")
        )
    if card.adaptation:
        a = card.adaptation
        lines.append(
            f"  adapted to   {a.get('recording')} ({a.get('mode')}, {a.get('trials')} trials, "
            f"{a.get('epochs')} epochs; {a.get('new_units')} new units, {a.get('kept_units')} "
            f"kept) from {a.get('source') or '?'}"
        )
    if card.adapted_from:
        p = card.adapted_from
        lines.append(
            f"  adapted from a model of {display.count(len(p.get('sessions', [])), 'session')}, "
            f"{p.get('units')} units, written {p.get('created') or '?'}"
            + (f" ({p['description']})" if p.get("description") else "")
        )
    lines.append(f"  scores       {scores_text(card.scores)}")
    return lines


def checkpoint_summary(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[str]]:
    """What ``neurofm info CKPT`` shows: the card of a neurofm checkpoint, or for one written
    before cards, what its config and vocabularies say.

    Returns
    -------
    (dict, list of str)
        A JSON-safe summary (``path``, ``format``, ``card`` or None, ``note``) and text lines.

    Raises
    ------
    CheckpointError
        A missing, unreadable or damaged file, or one that is not a neurofm checkpoint.
    """
    from neurofm.errors import NeuroFMError
    from neurofm.training.checkpoints import load_checkpoint

    path = Path(path)
    try:
        ckpt = load_checkpoint(path)
    except NeuroFMError as exc:
        raise CheckpointError(str(exc)) from None
    meta = ckpt.get("neurofm") if isinstance(ckpt, dict) else None
    if not isinstance(meta, Mapping) or "format" not in meta:
        raise CheckpointError(
            f"{path}: not a neurofm checkpoint (no 'neurofm' section with a format); a "
            "torch_brain POYO checkpoint loads with neurofm.pretrained.from_torch_brain"
        )
    fmt = str(meta["format"])
    card = read_card(meta, path)
    model = fmt.removeprefix("neurofm.").upper()
    lines = [f"{path}: neurofm {model} checkpoint (format {fmt})"]
    summary: dict[str, Any] = {"path": str(path), "format": fmt, "card": None, "note": ""}
    if card is not None:
        summary["card"] = card.to_dict()
        return summary, lines + card_lines(card)
    note = NO_CARD if fmt == "neurofm.poyo" else "no model card (cards are written for POYO)"
    summary["note"] = note
    lines.append(f"  {note}")
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    vocab = {}
    for name in ("unit_emb", "session_emb"):
        words = (state or {}).get(f"model.{name}._extra_state")
        if isinstance(words, Mapping) and isinstance(words.get("words"), list):
            vocab[name] = [str(w) for w in words["words"][1:]]  # row 0 is padding
    if vocab:
        summary["vocabulary"] = {
            "units": len(vocab.get("unit_emb", [])),
            "sessions": vocab.get("session_emb", []),
        }
        sessions = vocab.get("session_emb", [])
        lines.append(
            f"  vocabulary   {len(vocab.get('unit_emb', []))} units, {len(sessions)} sessions: "
            + ", ".join(sessions)
        )
    if isinstance(meta.get("model_config"), Mapping):
        summary["config"] = plain(meta["model_config"])
        shown = ", ".join(f"{k} {v}" for k, v in summary["config"].items())
        lines.append(f"  config       {shown}")
    if isinstance(meta.get("train_config"), Mapping):
        summary["train_config"] = plain(meta["train_config"])
        shown = ", ".join(f"{k} {v}" for k, v in summary["train_config"].items())
        lines.append(f"  training     {shown}")
    return summary, lines


def update_card(path: str | os.PathLike[str], **fields: Any) -> ModelCard:
    """Change fields of a POYO checkpoint's card in place (e.g. ``description="trained on
    synthetic data only"``, or ``scores={"test": {"r2": 0.9}}``); ``scores`` are merged by
    split, other fields replaced. The file is rewritten atomically and resealed.

    Returns
    -------
    ModelCard
        The updated card.

    Raises
    ------
    CheckpointError
        Not a POYO checkpoint with a card, or an unknown field.
    """
    from neurofm.errors import NeuroFMError
    from neurofm.training.checkpoints import load_checkpoint, write_checkpoint

    path = Path(path)
    try:
        ckpt = load_checkpoint(path)
    except NeuroFMError as exc:
        raise CheckpointError(str(exc)) from None
    meta = ckpt.get("neurofm") if isinstance(ckpt, dict) else None
    card = read_card(meta, path) if isinstance(meta, Mapping) else None
    if card is None:
        raise CheckpointError(f"{path}: no model card to update ({NO_CARD})")
    known = {f.name for f in dataclasses.fields(ModelCard)} - {"extra", "card_version"}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise CheckpointError(f"{path}: unknown card field(s) {unknown} (known: {sorted(known)})")
    for name, value in fields.items():
        if name == "scores":
            value = {**card.scores, **dict(value)}
        setattr(card, name, value)
    meta[CARD_KEY] = card.to_dict()
    write_checkpoint(ckpt, path)
    return ModelCard.from_dict(meta[CARD_KEY], str(path))
