"""Read and write torch_brain's POYO checkpoints (torch_brain 0.2.1 ``torch_brain.models.POYO``).

:func:`from_torch_brain` turns a torch_brain POYO checkpoint -- a Lightning checkpoint as
torch_brain's training scripts write it and POYO-MP ships (``state_dict`` with ``model.``-prefixed
names, ``hyper_parameters["model"]`` holding the POYO keyword arguments), or a bare
``model.state_dict()`` -- into a neurofm :class:`~neurofm.models.poyo.POYO` whose outputs equal
torch_brain's on the same inputs (``benchmarks/torch_brain_import_bench.py`` checks it against
torch_brain itself; ``tests/fixtures/torch_brain/`` holds a tiny checkpoint made by torch_brain
with its outputs). :func:`to_torch_brain` writes the other way: a Lightning-layout file that
``torch_brain.models.POYO.load_pretrained`` reads. torch_brain is never imported: the files are
read with ``torch.load(weights_only=True)``.

What differs between the two implementations, and how it is bridged:

* **Rotary feature pairs.** Both rotate the first ``dim_head // 2`` features of every attention
  head by ``t * omega_k``, with the same frequencies and the same sign convention, but pair them
  differently: torch_brain rotates feature ``2k`` with ``2k + 1`` (interleaved), neurofm feature
  ``k`` with ``k + dim_head // 4`` (split halves). The maps are equivalent up to a permutation of
  each head's features, so the rows of ``to_q`` / ``to_kv`` / ``to_qkv`` and the columns of
  ``to_out`` are permuted head by head (:func:`_head_permutation`); the value features are
  permuted too (they are rotated in the encoder and processor, and ``to_out`` absorbs the order).
* **Rotary frequencies.** torch_brain stores them (buffer ``rotary_emb.omega``, ``dim_head // 2``
  values, zero past the rotated ones); neurofm recomputes them from ``t_min`` / ``t_max`` op for op
  as torch_brain does (:func:`~neurofm.models.layers.rotary.frequencies`), so no bridge is
  needed: the import checks that the stored ones are the recomputed ones (frequencies of other
  periods are refused: the hyper-parameters contradict the weights), the export writes them, and
  an imported model keeps them bit for bit through a neurofm save/load.
* **Vocabularies.** torch_brain's ``InfiniteVocabEmbedding`` keeps an ``OrderedDict`` word -> row
  in the state dict (``<prefix>vocab``), row 0 being the reserved word ``"NA"`` (padding);
  neurofm's :class:`~neurofm.models.layers.VocabEmbedding` keeps ``{"words": [...]}`` in
  ``<prefix>_extra_state``, row 0 being ``"<pad>"``. Rows keep their order; the padding row is
  copied as is.
* **Feed-forward blocks.** torch_brain wraps the pre-norm outside the block
  (``Sequential(LayerNorm, FeedForward(net=Sequential(Linear, GEGLU, Dropout, Linear)))``);
  neurofm's ``FeedForward`` holds ``norm``, ``up``, ``down``. Same function, other names.
* **Latents, readout.** Same layout: ``latent_emb`` rows are repeated at every latent step, the
  decoder's queries are the session embedding, one ``nn.Linear`` readout.

Timestamps: both compute the rotary angles in float64 when the timestamps are float64 (torch_brain's
tokenizer gives float64; neurofm always does), so outputs agree to float32 rounding. Given float32
timestamps torch_brain computes the angles in float32, which costs it up to ~4e-3 rad of phase at
the shortest period (1e-4 s): pass float64 timestamps to compare.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

import neurofm
from neurofm.atomic import atomic_path
from neurofm.errors import NeuroFMError
from neurofm.models.layers.vocab import PAD
from neurofm.models.poyo import POYO, POYOConfig
from neurofm.pretrained.errors import CheckpointError
from neurofm.training.checkpoints import load_checkpoint

__all__ = ["from_torch_brain", "to_torch_brain", "TB_PAD"]

log = logging.getLogger(__name__)

#: torch_brain's reserved padding word (row 0 of every ``InfiniteVocabEmbedding``).
TB_PAD = "NA"

#: torch_brain's POYO keyword arguments that set the architecture or the time geometry, with the
#: defaults of ``torch_brain.models.POYO.__init__`` (0.2.1) where it has one.
TB_DEFAULTS: dict[str, Any] = {
    "num_latents_per_step": 64,
    "dim": 512,
    "depth": 2,
    "dim_head": 64,
    "cross_heads": 1,
    "self_heads": 8,
    "ffn_dropout": 0.2,
    "lin_dropout": 0.4,
    "atn_dropout": 0.0,
    "emb_init_scale": 0.02,
    "t_min": 1e-4,
    "t_max": 2.0627,
}
#: Required (no default in torch_brain); ``sequence_length`` is neurofm's ``window_length``.
TB_REQUIRED = ("sequence_length", "latent_step")
#: Hyper-parameters torch_brain's own loader drops or infers.
TB_IGNORED = {"_target_", "dim_out"}

# ------------------------------------------------------------------------------------------------
# the name table: neurofm state-dict name -> torch_brain state-dict name, and how values move
# ------------------------------------------------------------------------------------------------

SAME, ROWS, COLS = "same", "rows", "cols"  # copy; permute head rows; permute head columns


def _attention_names(nf: str, tb: str, cross: bool) -> list[tuple[str, str, str]]:
    """Names of one rotary attention block (cross: encoder/decoder; else processor)."""
    names = [(f"{nf}.norm.weight", f"{tb}.norm.weight", SAME)]
    names.append((f"{nf}.norm.bias", f"{tb}.norm.bias", SAME))
    if cross:
        names += [
            (f"{nf}.context_norm.weight", f"{tb}.norm_context.weight", SAME),
            (f"{nf}.context_norm.bias", f"{tb}.norm_context.bias", SAME),
            (f"{nf}.to_q.weight", f"{tb}.to_q.weight", ROWS),
            (f"{nf}.to_kv.weight", f"{tb}.to_kv.weight", ROWS),
        ]
    else:
        names.append((f"{nf}.to_qkv.weight", f"{tb}.to_qkv.weight", ROWS))
    names += [
        (f"{nf}.to_out.weight", f"{tb}.to_out.weight", COLS),
        (f"{nf}.to_out.bias", f"{tb}.to_out.bias", SAME),
    ]
    return names


def _ffn_names(nf: str, tb: str) -> list[tuple[str, str, str]]:
    """neurofm ``FeedForward(norm, up, down)`` = torch_brain ``Sequential(LayerNorm,
    FeedForward(net=Sequential(Linear, GEGLU, Dropout, Linear)))``."""
    pairs = [("norm", "0"), ("up", "1.net.0"), ("down", "1.net.3")]
    return [(f"{nf}.{a}.{p}", f"{tb}.{b}.{p}", SAME) for a, b in pairs for p in ("weight", "bias")]


def name_table(depth: int) -> list[tuple[str, str, str]]:
    """``(neurofm name, torch_brain name, how)`` for every parameter of a POYO of ``depth``
    processor layers; ``how`` is ``"same"`` (copied), ``"rows"`` (each head's output features
    permuted) or ``"cols"`` (each head's input features permuted). The vocabularies and the
    rotary frequencies are handled apart (see the module docstring)."""
    table = [
        ("unit_emb.weight", "unit_emb.weight", SAME),
        ("session_emb.weight", "session_emb.weight", SAME),
        ("token_type_emb.weight", "token_type_emb.weight", SAME),
        ("latent_emb.weight", "latent_emb.weight", SAME),
    ]
    table += _attention_names("enc_atn", "enc_atn", cross=True)
    table += _ffn_names("enc_ffn", "enc_ffn")
    for i in range(depth):
        table += _attention_names(f"proc_layers.{i}.0", f"proc_layers.{i}.0", cross=False)
        table += _ffn_names(f"proc_layers.{i}.1", f"proc_layers.{i}.1")
    table += _attention_names("dec_atn", "dec_atn", cross=True)
    table += _ffn_names("dec_ffn", "dec_ffn")
    table += [
        ("readout.weight", "readout.weight", SAME),
        ("readout.bias", "readout.bias", SAME),
    ]
    return table


#: Buffers and vocabularies of a torch_brain POYO state dict, beside the parameters.
TB_EXTRA = ("rotary_emb.omega", "unit_emb.vocab", "session_emb.vocab")


def _head_permutation(dim_head: int) -> torch.Tensor:
    """``perm[j]`` = the neurofm feature at torch_brain's position ``j`` within one head
    (neurofm -> torch_brain: ``tb = nf[perm]``; its ``argsort`` goes back).

    torch_brain rotates the pair ``(2k, 2k + 1)``, neurofm ``(k, k + r)``, for ``k < r =
    dim_head // 4``; the unrotated features keep their place.
    """
    r = dim_head // 4
    perm = torch.arange(dim_head)
    perm[0 : 2 * r : 2] = torch.arange(r)
    perm[1 : 2 * r : 2] = torch.arange(r, 2 * r)
    return perm


def _permute(value: torch.Tensor, how: str, perm: torch.Tensor) -> torch.Tensor:
    """Apply ``perm`` to every head block of a projection's rows (``to_q``, ``to_kv``,
    ``to_qkv``: ``(blocks * heads * dim_head, dim)``) or columns (``to_out``)."""
    dh = len(perm)
    if how == ROWS:
        return value.reshape(-1, dh, value.shape[-1])[:, perm].reshape(value.shape)
    if how == COLS:
        return value.reshape(value.shape[0], -1, dh)[:, :, perm].reshape(value.shape)
    return value


# ------------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------------


def _names(keys: Any, limit: int = 8) -> str:
    keys = sorted(keys)
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(repr(k) for k in keys[:limit]) + more


def _split_checkpoint(path: Path, ckpt: Any) -> tuple[dict[str, Any], dict[str, Any] | None, str]:
    """(bare state dict, POYO hyper-parameters or None, layout) of a loaded file."""
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(
            f"{path}: not a torch_brain POYO checkpoint: it holds a {type(ckpt).__name__}, not "
            "a Lightning checkpoint or a state dict"
        )
    if "neurofm" in ckpt:
        raise CheckpointError(
            f"{path}: a neurofm checkpoint, not a torch_brain one: load it with "
            "neurofm.load_pretrained"
        )
    if "state_dict" in ckpt:  # Lightning: the POYO is the module's attribute ``model``
        state = ckpt["state_dict"]
        if not isinstance(state, Mapping):
            raise CheckpointError(f"{path}: 'state_dict' is a {type(state).__name__}, not a dict")
        prefix = "model."
        if state and all(str(k).startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
        hparams = ckpt.get("hyper_parameters")
        if isinstance(hparams, Mapping) and isinstance(hparams.get("model"), Mapping):
            hparams = hparams["model"]
        elif not (isinstance(hparams, Mapping) and "sequence_length" in hparams):
            hparams = None
        return dict(state), (dict(hparams) if hparams is not None else None), "lightning"
    if any(str(k).endswith("unit_emb.weight") for k in ckpt):
        return dict(ckpt), None, "state_dict"
    raise CheckpointError(
        f"{path}: not a torch_brain POYO checkpoint: neither a Lightning checkpoint "
        f"('state_dict') nor a POYO state dict (found keys {_names(map(str, ckpt), 5)})"
    )


def _check_keys(path: Path, state: Mapping[str, Any], depth: int) -> None:
    expected = {tb for _, tb, _ in name_table(depth)} | set(TB_EXTRA)
    found = set(map(str, state))
    missing, unknown = expected - found, found - expected
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing {_names(missing)}")
        if unknown:
            parts.append(f"unknown {_names(unknown)}")
        raise CheckpointError(
            f"{path}: not the state dict of a torch_brain POYO (depth {depth}): " + "; ".join(parts)
        )


def _tensor(path: Path, state: Mapping[str, Any], key: str, ndim: int) -> torch.Tensor:
    value = state[key]
    if not isinstance(value, torch.Tensor) or value.ndim != ndim or not value.is_floating_point():
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise CheckpointError(f"{path}: {key}: expected a {ndim}-D float tensor, found {shape}")
    return value


def _vocabulary(path: Path, state: Mapping[str, Any], name: str) -> list[str]:
    """The words of a torch_brain vocabulary in row order, without the padding word."""
    key = f"{name}.vocab"
    vocab = state[key]
    rows = _tensor(path, state, f"{name}.weight", 2).shape[0]
    if not isinstance(vocab, Mapping) or not all(
        isinstance(w, str) and isinstance(i, int) for w, i in vocab.items()
    ):
        raise CheckpointError(
            f"{path}: {key}: expected a dict word -> row (torch_brain's InfiniteVocabEmbedding), "
            f"found {type(vocab).__name__}"
        )
    if sorted(vocab.values()) != list(range(rows)) or vocab.get(TB_PAD) != 0:
        raise CheckpointError(
            f"{path}: {key}: expected {rows} words numbered 0..{rows - 1} with {TB_PAD!r} at 0 "
            f"(as {name}.weight has {rows} rows), found {len(vocab)} words"
        )
    words = [w for w, _ in sorted(vocab.items(), key=lambda item: item[1])][1:]
    if PAD in words:
        raise CheckpointError(f"{path}: {key}: the word {PAD!r} is reserved by neurofm")
    return words


def _config(
    path: Path,
    state: Mapping[str, Any],
    depth: int,
    hparams: Mapping[str, Any] | None,
    overrides: Mapping[str, Any] | None,
    layout: str,
) -> POYOConfig:
    """neurofm's config: sizes read from the tensors, checked against the hyper-parameters."""
    omega = _tensor(path, state, "rotary_emb.omega", 1)
    dim_head = 2 * omega.shape[0]
    rotated = dim_head // 4  # torch_brain's RotaryTimeEmbedding(rotate_dim=dim_head // 2)
    if (
        not rotated
        or dim_head % 4
        or bool(omega[rotated:].any())
        or not bool((omega[:rotated] > 0).all())
    ):
        raise CheckpointError(
            f"{path}: rotary_emb.omega: expected {dim_head // 2} frequencies of which the first "
            f"{rotated} are positive and the rest zero (half of each head rotated)"
        )
    sizes = {
        "dim": _tensor(path, state, "token_type_emb.weight", 2).shape[1],
        "depth": depth,
        "dim_head": dim_head,
        "num_latents_per_step": _tensor(path, state, "latent_emb.weight", 2).shape[0],
        "cross_heads": _tensor(path, state, "enc_atn.to_q.weight", 2).shape[0] // dim_head,
        "self_heads": _tensor(path, state, "proc_layers.0.0.to_qkv.weight", 2).shape[0]
        // (3 * dim_head),
    }
    given = dict(hparams or {})
    given.update(overrides or {})
    unknown = set(given) - set(TB_DEFAULTS) - set(TB_REQUIRED) - TB_IGNORED
    if unknown:
        log.warning("%s: ignoring unknown POYO hyper-parameters %s", path, _names(unknown))
    for key, value in sizes.items():
        if key in given and given[key] != value:
            raise CheckpointError(
                f"{path}: hyper-parameter {key}={given[key]!r} does not match the weights, "
                f"which have {key}={value}"
            )
    missing = [k for k in TB_REQUIRED if k not in given]
    if missing:
        where = {
            "lightning": "its hyper-parameters (hyper_parameters['model']) lack",
            "state_dict": "a bare state dict lacks",
        }[layout]
        raise CheckpointError(
            f"{path}: {where} {', '.join(missing)} (the time geometry is not in the weights): "
            f"pass them, e.g. from_torch_brain(path, hparams={{'sequence_length': 1.0, "
            f"'latent_step': 0.125}})"
        )
    values = {k: given.get(k, default) for k, default in TB_DEFAULTS.items()}
    values.update(sizes)
    values["window_length"] = given["sequence_length"]
    values["latent_step"] = given["latent_step"]
    values["dim_out"] = _tensor(path, state, "readout.weight", 2).shape[0]
    try:
        return POYOConfig(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "config"
        raise CheckpointError(f"{path}: hyper-parameter {field}: {err['msg']}") from None


def from_torch_brain(
    path: str | os.PathLike[str],
    *,
    hparams: Mapping[str, Any] | None = None,
    readout: str = "regression",
) -> POYO:
    """Load a torch_brain POYO checkpoint as a neurofm POYO with the same outputs.

    Parameters
    ----------
    path : path-like
        A Lightning checkpoint written by torch_brain's training (``state_dict`` with
        ``model.``-prefixed names and ``hyper_parameters["model"]``, as POYO-MP ships), or a
        ``torch.save(model.state_dict())`` of a ``torch_brain.models.POYO``.
    hparams : mapping, optional
        torch_brain POYO keyword arguments overriding or completing the checkpoint's. A bare state
        dict needs ``sequence_length`` and ``latent_step`` (everything else is read from the
        tensors); sizes given here must match the tensors.
    readout : {"regression", "class"}
        What the outputs are (torch_brain's readout is one ``nn.Linear`` either way).

    Returns
    -------
    POYO
        The model in eval mode, with torch_brain's unit and session vocabularies (same rows, same
        order) and rotary frequencies.

    Raises
    ------
    CheckpointError
        A missing, foreign or damaged file; missing or unknown state-dict keys (named); a tensor
        of the wrong shape; a damaged vocabulary; hyper-parameters that contradict the weights or
        are missing for a bare state dict. torch_brain's file is read with
        ``torch.load(weights_only=True)``, so a file holding pickled code is refused.
    """
    path = Path(path)
    try:
        ckpt = load_checkpoint(path)  # weights_only=True; one-line errors
    except CheckpointError:
        raise
    except NeuroFMError as exc:
        raise CheckpointError(str(exc)) from None
    state, ckpt_hparams, layout = _split_checkpoint(path, ckpt)
    depth = len({k.split(".")[1] for k in map(str, state) if k.startswith("proc_layers.")})
    _check_keys(path, state, max(depth, 1))  # torch_brain's POYO has at least one layer
    config = _config(path, state, depth, ckpt_hparams, hparams, layout)
    units = _vocabulary(path, state, "unit_emb")
    sessions = _vocabulary(path, state, "session_emb")

    inverse = torch.argsort(_head_permutation(config.dim_head))  # torch_brain -> neurofm order
    converted: dict[str, Any] = {}
    for nf, tb, how in name_table(depth):
        value = state[tb]
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: {tb}: expected a tensor, found {type(value).__name__}")
        converted[nf] = _permute(value.detach().to(torch.float32), how, inverse)
    converted["unit_emb._extra_state"] = {"words": [PAD, *units]}
    converted["session_emb._extra_state"] = {"words": [PAD, *sessions]}

    model = POYO(config, units, sessions, readout=readout)
    try:
        model.load_state_dict(converted, strict=True)
    except RuntimeError as exc:  # a tensor of another shape than the config implies
        detail = " ".join(str(exc).split())
        raise CheckpointError(f"{path}: weights do not fit the architecture: {detail}") from None
    _check_frequencies(path, state["rotary_emb.omega"][: config.dim_head // 4], model)
    log.info(
        "%s: torch_brain POYO (%s layout): dim %d, depth %d, %d units, %d sessions",
        path,
        layout,
        config.dim,
        config.depth,
        len(units),
        len(sessions),
    )
    return model.eval()


# ------------------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------------------


def torch_brain_hparams(config: POYOConfig) -> dict[str, Any]:
    """The ``torch_brain.models.POYO`` keyword arguments (but ``dim_out``) of a neurofm config."""
    out: dict[str, Any] = {
        "sequence_length": float(config.window_length),
        "latent_step": float(config.latent_step),
    }
    out.update({k: getattr(config, k) for k in TB_DEFAULTS})
    return out


def _tb_vocab(words: list[str], what: str) -> OrderedDict[str, int]:
    if TB_PAD in words[1:]:
        raise NeuroFMError(
            f"{what} id {TB_PAD!r} is reserved by torch_brain (padding); rename it before export"
        )
    return OrderedDict((TB_PAD if i == 0 else w, i) for i, w in enumerate(words))


def _check_frequencies(path: Path, stored: torch.Tensor, model: POYO) -> None:
    """neurofm computes the rotary frequencies as torch_brain does, so the checkpoint's are
    recomputed bit for bit from ``t_min`` / ``t_max``; frequencies of other periods mean the
    hyper-parameters contradict the weights. Where an ulp differs (a checkpoint written on other
    hardware), the stored values are used, so outputs equal torch_brain's."""
    stored = stored.detach().to(torch.float32)
    ours = model.rotary.omega
    if torch.equal(stored, ours):
        return
    if not torch.allclose(stored, ours, rtol=1e-5, atol=0.0):
        c = model.config
        raise CheckpointError(
            f"{path}: rotary_emb.omega: the stored frequencies are not those of t_min={c.t_min}, "
            f"t_max={c.t_max} (pass the checkpoint's t_min/t_max in hparams)"
        )
    log.warning(
        "%s: rotary_emb.omega differs from the recomputed frequencies by float rounding; "
        "using the stored ones (a neurofm save/load recomputes them)",
        path,
    )
    with torch.no_grad():
        model.rotary.omega.copy_(stored)


def to_torch_brain(model: POYO | Any, path: str | os.PathLike[str]) -> Path:
    """Write a neurofm POYO as a torch_brain checkpoint (Lightning layout).

    ``torch_brain.models.POYO.load_pretrained(path)`` then builds a torch_brain POYO with the same
    vocabularies and the same outputs (on float64 timestamps, see the module docstring).

    Parameters
    ----------
    model : POYO
        The model (or an object with a ``.model`` POYO, such as a loaded pretrained model).
    path : path-like
        Where to write (atomically: a partial file never takes the name).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    NeuroFMError
        Not a POYO, or a vocabulary holding torch_brain's reserved word ``"NA"``.
    """
    if not isinstance(model, POYO) and isinstance(getattr(model, "model", None), POYO):
        model = model.model
    if not isinstance(model, POYO):
        raise NeuroFMError(f"to_torch_brain needs a neurofm POYO, got {type(model).__name__}")
    path = Path(path)
    config = model.config
    source = model.state_dict()
    perm = _head_permutation(config.dim_head)
    omega = torch.zeros(config.dim_head // 2)
    omega[: config.dim_head // 4] = model.rotary.omega.detach().cpu()
    # in torch_brain's own order (its modules' registration order), extras after their owners
    extras = {
        "unit_emb.weight": ("unit_emb.vocab", _tb_vocab(model.unit_emb.words, "unit")),
        "session_emb.weight": ("session_emb.vocab", _tb_vocab(model.session_emb.words, "session")),
        "latent_emb.weight": ("rotary_emb.omega", omega),
    }
    state: dict[str, Any] = {}
    for nf, tb, how in name_table(config.depth):
        state[tb] = _permute(source[nf].detach().cpu(), how, perm).clone()
        if tb in extras:
            key, value = extras[tb]
            state[key] = value
    ckpt = {
        "state_dict": OrderedDict(("model." + k, v) for k, v in state.items()),
        "hyper_parameters": {"model": torch_brain_hparams(config)},
        "exported_by": f"neurofm {neurofm.__version__}",
    }
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
    return path
