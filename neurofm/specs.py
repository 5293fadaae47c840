"""Declarative specs: dataset cards (``datasets/*.yaml``) and pipelines (``pipelines/*.yaml``).

Both are validated by pydantic models that forbid unknown keys, and every problem is reported as
one :class:`~neurofm.errors.SpecError` line naming the file, the key path and what was expected::

    pipelines/demo.yaml: steps[0].pull.strem: unknown key (expected one of: include, stream, to)

A dataset card says where the data is and how to read it::

    name: mc_maze
    source: {dandi: "000128", version: "0.220113.0400", include: ["sub-Jenkins/*full*"]}
    reader: nwb
    fields: {target: hand_vel, trials: trials, valid_trials: null, split_column: split}
    splits: {by: column, values: {val: valid}}

A pipeline names a card and its steps::

    name: demo
    dataset: ../datasets/synthetic_reaching.yaml   # relative to this file, or a card name
    workdir: demo-output/pipeline
    steps:
      - pull: {}
      - ingest: {out: catalog}
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from neurofm.errors import SpecError

__all__ = [
    "DatasetCard",
    "EEGPreprocessing",
    "EvaluateStep",
    "TrainStep",
    "FieldMapping",
    "FMRICleaning",
    "IngestStep",
    "PipelineSpec",
    "PullStep",
    "SourceSpec",
    "SyntheticSource",
    "SplitSpec",
    "load_card",
    "load_pipeline",
    "load_yaml",
    "read_yaml",
    "validate",
]

T = TypeVar("T")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EEGPreprocessing(BaseModel):
    """The preprocessing chain run by MNE before an EEG recording is stored.

    Steps run in this order (each one only if configured): mark ``bad_channels`` ->
    ``notch`` (``Raw.notch_filter``) -> band-pass ``l_freq``/``h_freq`` (``Raw.filter``) ->
    bad channels interpolated (spherical splines, ``Raw.interpolate_bads``) or dropped ->
    ``reference`` (``Raw.set_eeg_reference``) -> ``resample`` (``Raw.resample``). Bad channels
    are handled before re-referencing so they never leak into an average reference.

    In YAML (a dataset card's ``preprocessing:`` or a file given to ``neurofm ingest``)::

        bad_channels: [T7]
        bad_channel_action: interpolate
        notch: [50, 100]
        l_freq: 1.0
        h_freq: 40.0
        reference: average
        resample: 200
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    bad_channels: list[str] = Field(
        default_factory=list, description="channels to mark bad (added to the file's own)"
    )
    bad_channel_action: Literal["interpolate", "drop", "keep"] = Field(
        "interpolate", description="what to do with bad channels: interpolate, drop, or keep"
    )
    notch: list[float] = Field(default_factory=list, description="line-noise frequencies, Hz")
    l_freq: float | None = Field(None, gt=0, description="high-pass edge of the band-pass, Hz")
    h_freq: float | None = Field(None, gt=0, description="low-pass edge of the band-pass, Hz")
    reference: Literal["average"] | list[str] | None = Field(
        None, description="'average' or the reference channels' names"
    )
    resample: float | None = Field(None, gt=0, description="new sampling rate, Hz")

    @model_validator(mode="after")
    def _band(self) -> EEGPreprocessing:
        if self.l_freq is not None and self.h_freq is not None and self.l_freq >= self.h_freq:
            raise ValueError(f"l_freq ({self.l_freq}) must be below h_freq ({self.h_freq})")
        if any(f <= 0 for f in self.notch):
            raise ValueError(f"notch frequencies must be > 0 Hz (got {self.notch})")
        return self

    @property
    def is_empty(self) -> bool:
        return self == EEGPreprocessing()


class SyntheticSource(_Strict):
    """A dataset neurofm generates itself (deterministic per seed), for demos and tests."""

    kind: Literal["eeg-fmri"] = Field(description="generator: 'eeg-fmri' (BIDS EEG-fMRI)")
    subjects: int = Field(3, ge=1, le=99)
    runs: int = Field(1, ge=1, le=9)
    duration: float = Field(480.0, gt=0, description="scanning time per run, s")
    tr: float = Field(2.0, gt=0, description="repetition time, s")
    parcels: int = Field(20, ge=2, le=500)
    bold_band: Literal["alpha", "beta", "gamma"] = "gamma"
    seed: int = 0


class SourceSpec(_Strict):
    """Where the raw files are: a DANDI dandiset (and version), a local folder, or a
    synthetic dataset neurofm generates."""

    dandi: Annotated[str, Field(pattern=r"^\d{6}$")] | None = Field(
        None, description="6-digit dandiset id, e.g. '000128'"
    )
    version: str | None = Field(
        None, description="'draft' or a published version; default the latest published"
    )
    include: list[str] = Field(default_factory=list, description="glob patterns on asset paths")
    local: str | None = Field(None, description="a local folder or NWB file instead of DANDI")
    synthetic: SyntheticSource | None = Field(
        None, description="generate the dataset (the pull step writes it)"
    )
    url: str = Field("", description="the dataset's landing page")

    @field_validator("dandi", mode="before")
    @classmethod
    def _quoted_id(cls, value: Any) -> Any:
        # YAML reads an unquoted 000140 as the octal number 96, and 000128 as a string.
        if isinstance(value, int) and not isinstance(value, bool):
            raise ValueError(
                'must be a quoted 6-digit string, e.g. "000128" (YAML reads an unquoted id '
                "with leading zeros as a number)"
            )
        return value

    @model_validator(mode="after")
    def _one_source(self) -> SourceSpec:
        given = [k for k in ("dandi", "local", "synthetic") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of 'dandi' (a dandiset id), 'local' (a folder) or "
                f"'synthetic' (a generator), got {given or 'none'}"
            )
        return self

    @property
    def ref(self) -> str:
        return f"dandi:{self.dandi}" + (f"@{self.version}" if self.version else "")


class FieldMapping(_Strict):
    """Which parts of the files matter: decoding target, trials, validity, split column."""

    spikes: str = Field("units", description="NWB Units table")
    target: str | None = Field(None, description="behaviour series to decode, e.g. 'hand_vel'")
    trials: str = Field("trials", description="interval table of trials")
    valid_trials: str | None = Field(
        None, description="boolean trials column marking trials to use (e.g. 'is_success')"
    )
    split_column: str | None = Field(
        None, description="trials column holding train/valid/test labels (e.g. 'split')"
    )


class SplitSpec(_Strict):
    """How trials become train/valid/test domains (never overlapping in time)."""

    by: Literal["column", "random", "time"] = Field(
        "random",
        description="per trial from a column, per trial at random, or contiguous blocks of "
        "time (train first) for continuous recordings such as EEG-fMRI runs",
    )
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    seed: int = 0
    values: dict[str, Literal["train", "valid", "test", "drop"]] = Field(
        default_factory=dict,
        description="rename split-column values, e.g. {val: valid}; 'drop' discards trials",
    )
    held_out_subjects: list[str] = Field(
        default_factory=list,
        description="subjects whose recordings are test data only (for cross-subject scores)",
    )

    @model_validator(mode="after")
    def _fractions_sum(self) -> SplitSpec:
        if self.by == "random" and abs(sum(self.fractions) - 1.0) > 1e-6:
            raise ValueError(f"fractions {list(self.fractions)} must sum to 1")
        return self


class FMRICleaning(_Strict):
    """Parcel time-series cleaning done by nilearn's masker at ingest (``read_fmri``)."""

    standardize: Literal[False, "zscore_sample", "zscore", "psc"] = Field(
        False, description="False keeps raw parcel means; 'psc' = percent signal change"
    )
    detrend: bool = False
    high_pass: float | None = Field(None, gt=0, description="Hz")
    low_pass: float | None = Field(None, gt=0, description="Hz")


class DatasetCard(_Strict):
    """A dataset card: source, reader, field mapping and split rules."""

    name: str
    description: str = ""
    citation: str = ""
    source: SourceSpec
    reader: Literal["nwb", "eeg", "fmri", "bids"] = "nwb"
    fields: FieldMapping = FieldMapping()
    splits: SplitSpec = SplitSpec()
    preprocessing: EEGPreprocessing | None = Field(
        None, description="EEG preprocessing chain run by MNE (band-pass, notch, reference...)"
    )
    fmri_cleaning: FMRICleaning | None = Field(
        None, description="BOLD parcel cleaning by nilearn (detrend, filters, standardize)"
    )
    notes: str = ""

    @model_validator(mode="after")
    def _target_for_spikes(self) -> DatasetCard:
        if self.reader == "nwb" and self.fields.target is None:
            raise ValueError("fields.target is required for NWB (decoding) datasets")
        if self.splits.by == "time" and self.fields.target is None:
            raise ValueError("splits.by 'time' splits the span of fields.target; give one")
        return self


class PullStep(_Strict):
    """Download (or, with ``stream``, plan to stream) the card's DANDI assets."""

    to: str = Field("raw", description="download folder, relative to the workdir")
    include: list[str] = Field(default_factory=list, description="extra glob patterns")
    stream: bool = Field(False, description="read over HTTP at ingest instead of downloading")


class IngestStep(_Strict):
    """Read the pulled (or local) NWB files into a catalog, with the card's splits."""

    out: str = Field("catalog", description="catalog folder, relative to the workdir")
    force: bool = False


class TrainStep(_Strict):
    """Train POYO on the ingested catalog's train domains."""

    model: str = Field(
        "../models/poyo_tiny.yaml", description="model config, relative to this file"
    )
    out: str = Field("poyo", description="run folder (checkpoints, logs), relative to the workdir")
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    unit_dropout: tuple[int, int, int] | None = Field(
        None, description="(min, mode, max) units kept per window; null disables"
    )
    seed: int = 0
    num_workers: int = Field(0, ge=0)
    recordings: list[str] = Field(default_factory=list, description="default: all with splits")


class EvaluateStep(_Strict):
    """Score the trained model (and baselines) on a split, stitched per session."""

    split: Literal["train", "valid", "test"] = "test"
    baselines: list[Literal["wiener", "gru", "ridge"]] | None = Field(
        None,
        description="baselines scored on the same points: wiener, gru (spikes; the default "
        "for POYO) or ridge (EEG band power x HRF; the default for SAMBA)",
    )
    plot: bool = Field(True, description="write predicted-vs-true plots (PNG)")


class Step(_Strict):
    """One pipeline step: a mapping with exactly one key naming the step."""

    pull: PullStep | None = None
    ingest: IngestStep | None = None
    train: TrainStep | None = None
    evaluate: EvaluateStep | None = None

    @model_validator(mode="before")
    @classmethod
    def _empty_options(cls, data: Any) -> Any:
        # `- pull:` (no options) parses as {"pull": None}; treat it as the defaults.
        if isinstance(data, dict):
            return {k: ({} if v is None else v) for k, v in data.items()}
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> Step:
        given = [k for k in type(self).model_fields if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"each step needs exactly one of {sorted(type(self).model_fields)}, got {given}"
            )
        return self

    @property
    def kind(self) -> str:
        return next(k for k in type(self).model_fields if getattr(self, k) is not None)

    @property
    def options(self) -> BaseModel:
        return getattr(self, self.kind)


class PipelineSpec(_Strict):
    """A runnable pipeline: a dataset card plus ordered steps."""

    name: str
    description: str = ""
    dataset: str = Field(description="card path (relative to this file) or a name in datasets/")
    workdir: str = Field("", description="output folder; default pipeline-output/<name>")
    steps: list[Step] = Field(min_length=1)


# --------------------------------------------------------------------------------------------
# loading with clear errors
# --------------------------------------------------------------------------------------------


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """Parse a YAML file safely (no Python tags); every failure is a :class:`SpecError`.

    Raises
    ------
    SpecError
        Missing file, not UTF-8, or not valid YAML: one line naming the file (and the line).
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such spec file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise SpecError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model found by following ``loc`` (for 'unknown key' messages)."""
    import typing

    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", {})
        if part not in fields:
            break
        annotation = fields[part].annotation
        candidates = [annotation, *typing.get_args(annotation)]
        for arg in list(candidates):
            candidates.extend(typing.get_args(arg))
        current = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
        if current is None:
            return []
    return sorted(getattr(current, "model_fields", {}))


def validate(model: type[T], data: Any, path: str | os.PathLike[str]) -> T:
    """Validate already-parsed ``data`` against ``model`` (a pydantic model or a dataclass).

    Raises
    ------
    SpecError
        Not a mapping, an unknown key, a missing key or a wrong value: one message naming the
        file, each key path and what was expected.
    """
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping of keys at the top level, got {data!r}")
    if dataclasses.is_dataclass(model):
        # pydantic validates (and coerces) a dataclass's fields but ignores unknown keys.
        known = sorted(f.name for f in dataclasses.fields(model))
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise SpecError(
                "; ".join(
                    f"{path}: {key}: unknown key (expected one of: {', '.join(known)})"
                    for key in unknown
                )
            )
    try:
        return TypeAdapter(model).validate_python(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not str(p).startswith("function-"))
            if err["type"] == "extra_forbidden":
                expected = ", ".join(_fields_at(model, loc[:-1]))
                lines.append(f"{path}: {_loc(loc)}: unknown key (expected one of: {expected})")
            elif err["type"] == "missing":
                lines.append(f"{path}: {_loc(loc)}: required key is missing")
            else:
                got = err.get("input")
                msg = err["msg"].removeprefix("Value error, ")
                shown = f" (got {got!r})" if not isinstance(got, dict | list) else ""
                lines.append(f"{path}: {_loc(loc)}: {msg}{shown}")
        raise SpecError("; ".join(lines)) from None


def load_yaml(path: str | os.PathLike[str], model: type[T]) -> T:
    """Read a YAML spec and validate it against ``model``: the one way neurofm loads a spec.

    Dataset cards, pipelines, model configs, EEG preprocessing and analysis configs all come
    through here, so every mistake in any of them reads the same way.

    Parameters
    ----------
    path : path-like
        The YAML file.
    model : type
        A pydantic model (unknown keys are errors when it forbids extras, as neurofm's do) or a
        dataclass (unknown keys are always errors).

    Returns
    -------
    An instance of ``model``.

    Raises
    ------
    SpecError
        One line per problem, each naming the file, the key path and what was expected.
    """
    return validate(model, read_yaml(path), path)


def load_card(path: str | os.PathLike[str]) -> DatasetCard:
    """Load and validate a dataset card."""
    return load_yaml(path, DatasetCard)


def load_pipeline(path: str | os.PathLike[str]) -> tuple[PipelineSpec, DatasetCard, Path]:
    """Load a pipeline, its dataset card, and resolve its working folder.

    The card is looked up relative to the pipeline file, then as ``datasets/<name>.yaml``
    next to the pipeline's folder.
    """
    path = Path(path)
    spec = load_yaml(path, PipelineSpec)
    candidates = [
        path.parent / spec.dataset,
        path.parent.parent / "datasets" / spec.dataset,
        path.parent.parent / "datasets" / f"{spec.dataset}.yaml",
    ]
    card_path = next((c for c in candidates if c.is_file()), None)
    if card_path is None:
        raise SpecError(
            f"{path}: dataset: no card {spec.dataset!r} (looked for "
            f"{', '.join(str(c) for c in candidates)})"
        )
    workdir = Path(spec.workdir or Path("pipeline-output") / spec.name)
    return spec, load_card(card_path), workdir
