"""The model card a POYO checkpoint carries: what the model is, what it saw, how it scored.

Written into the checkpoint's ``neurofm`` section under ``card`` every time Lightning saves one
(:meth:`~neurofm.training.poyo.POYOModule.on_save_checkpoint`), as plain dicts, lists, strings
and numbers only, so it loads with ``torch.load(weights_only=True)``. The typed reader is
:class:`neurofm.pretrained.ModelCard`; this module only assembles the plain section, because
training sits below the package that reads it.

Card format ``1``::

    card_version, model, format, created (UTC ISO 8601), description,
    versions:   {neurofm, torch, lightning, python}
    config:     the model's config (POYOConfig as a dict)
    target:     {name, kind (regression | class), dim, channels, unit, rate}
    vocabulary: {units (count), sessions (ids), units_per_session {id: count}}
    training:   {settings (TrainConfig as a dict), total_steps, epochs_done, global_step, mode}
    data:       {catalog, recordings [{id, subject_id, session_id, n_units, dataset_card,
                 dandiset_id, dandiset_version, asset_path, sha256, source_url}],
                 dandisets [{id, version}], cards [names]}
    scores:     {split: {metric: value}} (e.g. valid r2 at the last validation)
    adapted_from: a short summary of the card this model was adapted from (or absent)
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import platform
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

__all__ = [
    "CARD_KEY",
    "CARD_VERSION",
    "card_summary",
    "data_section",
    "plain",
    "recording_entry",
    "target_section",
    "versions",
    "vocabulary_section",
]

#: Key of the card in a checkpoint's ``neurofm`` section.
CARD_KEY = "card"
#: Version of the card's layout (see the module docstring).
CARD_VERSION = 1


def plain(value: Any) -> Any:
    """``value`` as plain Python (dicts, lists, str, int, float, bool, None): safe for
    ``weights_only=True`` and JSON. Dataclasses become dicts, tuples and arrays lists, numpy
    scalars numbers, anything else its ``str``."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | np.ndarray):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    # exact builtin types: subclasses (numpy floats, torch's TorchVersion) would not unpickle
    # under weights_only=True
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return None if value is None else str(value)


def versions() -> dict[str, str]:
    """Versions of neurofm, torch, lightning and Python writing the checkpoint."""
    import lightning
    import torch

    import neurofm

    return {
        "neurofm": str(neurofm.__version__),
        "torch": str(torch.__version__),  # a TorchVersion, not a plain str
        "lightning": str(lightning.__version__),
        "python": platform.python_version(),
    }


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def vocabulary_section(model: Any) -> dict[str, Any]:
    """Unit count, session ids and units per session of a POYO's vocabularies."""
    per_session: dict[str, int] = {}
    for key in model.unit_emb.vocab:
        session = key.split("/", 1)[0] if "/" in key else ""
        per_session[session] = per_session.get(session, 0) + 1
    return {
        "units": len(model.unit_emb),
        "sessions": list(model.session_emb.vocab),
        "units_per_session": per_session,
    }


def target_section(target: Any, encoding: Any, recording: Any = None) -> dict[str, Any]:
    """What the model decodes: the target's name and kind, its width and, when a recording
    holding it is given, its channel names, unit and sampling rate."""
    from neurofm.data.targets import target_label

    is_class = hasattr(encoding, "classes")
    out: dict[str, Any] = {
        "name": target_label(target),
        "kind": "class" if is_class else "regression",
        "dim": int(encoding.width),
        "channels": [],
        "unit": "",
        "rate": None,
    }
    if is_class:
        out["classes"] = [str(c) for c in encoding.classes]
    if recording is not None and isinstance(target, str) and target in recording:
        signal = recording[target]
        channels = getattr(signal, "channels", None)
        out["channels"] = [] if channels is None else [str(c) for c in channels]
        out["unit"] = str(getattr(signal, "unit", "") or "")
        rate = getattr(signal, "rate", None)
        out["rate"] = float(rate) if rate is not None else None
    return out


def recording_entry(recording_id: str, recording: Any) -> dict[str, Any]:
    """One training recording as the card lists it: ids, units and its provenance."""
    meta, prov = recording.metadata, recording.provenance
    n_units = len(recording["spikes"].units) if "spikes" in recording else 0
    return {
        "id": recording_id,
        "subject_id": meta.subject_id,
        "session_id": meta.session_id,
        "n_units": n_units,
        "dataset_card": str(meta.extra.get("dataset_card") or ""),
        "dandiset_id": prov.dandiset_id,
        "dandiset_version": prov.dandiset_version,
        "asset_path": prov.asset_path,
        "sha256": prov.sha256,
        "source_url": prov.source_url,
    }


def data_section(catalog: str, entries: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The training data: the catalog, its recordings, and the dandisets and cards they
    come from (each listed once)."""
    recordings = [dict(e) for e in entries]
    dandisets = sorted(
        {(r["dandiset_id"], r["dandiset_version"]) for r in recordings if r["dandiset_id"]}
    )
    cards = sorted({r["dataset_card"] for r in recordings if r["dataset_card"]})
    return {
        "catalog": str(catalog),
        "recordings": recordings,
        "dandisets": [{"id": i, "version": v} for i, v in dandisets],
        "cards": cards,
    }


def card_summary(card: Mapping[str, Any]) -> dict[str, Any]:
    """A short version of a stored card (what an adapted or fine-tuned model's card keeps as
    ``adapted_from``): when and how it was trained, on what, and its scores.

    Parameters
    ----------
    card : mapping
        A card section as stored (see the module docstring).

    Returns
    -------
    dict
        ``created``, ``description``, ``versions``, ``sessions``, ``units``, ``recordings``,
        ``dandisets``, ``cards``, ``training`` (mode, steps, epochs), ``scores`` and the
        card's own ``adapted_from``, as plain values.
    """
    vocabulary = card.get("vocabulary") or {}
    data = card.get("data") or {}
    kept = ("mode", "epoch", "epochs_done", "global_step", "total_steps", "settings")
    return plain(
        {
            "created": card.get("created", ""),
            "description": card.get("description", ""),
            "versions": card.get("versions") or {},
            "sessions": list(vocabulary.get("sessions", [])),
            "units": int(vocabulary.get("units", 0)),
            "recordings": [str(r.get("id", "")) for r in data.get("recordings", [])],
            "dandisets": data.get("dandisets", []),
            "cards": data.get("cards", []),
            "training": {k: v for k, v in (card.get("training") or {}).items() if k in kept},
            "scores": card.get("scores") or {},
            "adapted_from": card.get("adapted_from"),
        }
    )
