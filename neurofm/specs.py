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
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from neurofm.display import config_html, config_repr
from neurofm.errors import SpecError

__all__ = [
    "ClusterSpec",
    "DatasetCard",
    "BaselineOptions",
    "EEGPreprocessing",
    "EvaluateStep",
    "TrainStep",
    "FieldMapping",
    "FMRICleaning",
    "GRUCandidate",
    "GRUOptions",
    "IngestStep",
    "PipelineSpec",
    "PullStep",
    "RepairSpec",
    "SourceSpec",
    "SyntheticSource",
    "SplitSpec",
    "TrialOverlapRepair",
    "TrialTargetSpec",
    "WienerOptions",
    "apply_overrides",
    "check_model_files",
    "check_fields",
    "card_folders",
    "find_card",
    "load_card",
    "load_pipeline",
    "load_yaml",
    "read_yaml",
    "validate",
]

T = TypeVar("T")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def __repr__(self) -> str:  # only the fields that differ from the defaults
        return config_repr(self)

    def _repr_html_(self) -> str:
        return config_html(self)


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
    """Where the raw files are: a DANDI dandiset (and version), an OpenNeuro dataset (and
    snapshot), a local folder, or a synthetic dataset neurofm generates."""

    dandi: Annotated[str, Field(pattern=r"^\d{6}$")] | None = Field(
        None, description="6-digit dandiset id, e.g. '000128'"
    )
    openneuro: Annotated[str, Field(pattern=r"^ds\d{6}$")] | None = Field(
        None, description="OpenNeuro dataset id, e.g. 'ds002336'"
    )
    version: str | None = Field(
        None,
        description="DANDI: 'draft' or a published version; OpenNeuro: a snapshot tag; "
        "default the latest published",
    )
    include: list[str] = Field(default_factory=list, description="glob patterns on file paths")
    local: str | None = Field(None, description="a local folder or NWB file instead of DANDI")
    synthetic: SyntheticSource | None = Field(
        None, description="generate the dataset (the pull step writes it)"
    )
    url: str = Field("", description="the dataset's landing page")
    size: str = Field(
        "",
        pattern=r"^(\d+(\.\d+)? ?([kKMGT]i?)?B)?$",
        description="download size of what `include` selects, as the archive states it "
        "(e.g. '2.1 GB'); shown by `neurofm datasets`",
    )

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
        kinds = ("dandi", "openneuro", "local", "synthetic")
        given = [k for k in kinds if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of 'dandi' (a dandiset id), 'openneuro' (a dataset id), "
                f"'local' (a folder) or 'synthetic' (a generator), got {given or 'none'}"
            )
        return self

    @property
    def ref(self) -> str:
        """``dandi:<id>[@<version>]`` or ``openneuro:<id>[@<tag>]``."""
        where = f"openneuro:{self.openneuro}" if self.openneuro else f"dandi:{self.dandi}"
        return where + (f"@{self.version}" if self.version else "")


class TrialTargetSpec(_Strict):
    """A per-trial value decoded at an event time: ``{trials: tp, at: set_time}``.

    The model is queried once per trial, at the time in the ``at`` column, and learns the
    value of the ``trials`` column there: a number (``kind: regression``, scored by R^2) or a
    category (``kind: class``, logits over the classes seen in training, scored by balanced
    accuracy).
    """

    trials: str = Field(description="column of the trials table holding the value to decode")
    at: str = Field(description="column of the trials table holding the event time, e.g. set_time")
    kind: Literal["regression", "class"] = Field(
        "regression", description="regression (a number) or class (a category)"
    )
    table: str = Field("trials", description="the interval table (default: fields.trials)")

    @property
    def label(self) -> str:
        """``tp@set_time`` (``is_short@set_time (class)``): how reports name the target."""
        return f"{self.trials}@{self.at}" + (" (class)" if self.kind == "class" else "")


def _target_kind(value: Any) -> str:
    return "~trial" if isinstance(value, dict | TrialTargetSpec) else "~series"


# A series name or a per-trial target: the value's shape picks the branch, so a mistake in
# one is reported against that branch only (not "should be a string" beside it).
_Target = Annotated[
    Annotated[str, Tag("~series")] | Annotated[TrialTargetSpec, Tag("~trial")],
    Discriminator(_target_kind),
]


class FieldMapping(_Strict):
    """Which parts of the files matter: decoding target, trials, validity, split column."""

    spikes: str = Field("units", description="NWB Units table")
    target: _Target | None = Field(
        None,
        description="behaviour series to decode, e.g. 'hand_vel'; or a per-trial value at an "
        "event time, e.g. {trials: tp, at: set_time} (add kind: class for a category)",
    )
    trials: str = Field("trials", description="interval table of trials")
    valid_trials: str | None = Field(
        None,
        description="expression over trial columns selecting the trials to use, e.g. "
        "'result == \"R\"' or 'task_success == 1 and discard_trial == 0' "
        "(see neurofm.expressions)",
    )
    split_column: str | None = Field(
        None, description="trials column holding train/valid/test labels (e.g. 'split')"
    )

    @model_validator(mode="before")
    @classmethod
    def _target_table(cls, data: Any) -> Any:
        # A per-trial target reads the card's trials table unless it names another.
        if isinstance(data, dict) and isinstance(data.get("target"), dict):
            target = dict(data["target"])
            target.setdefault("table", data.get("trials") or "trials")
            data = {**data, "target": target}
        return data

    @field_validator("valid_trials")
    @classmethod
    def _valid_expression(cls, value: str | None) -> str | None:
        if value is not None:
            from neurofm.expressions import parse_row_filter

            try:
                parse_row_filter(value)
            except SpecError as exc:
                raise ValueError(str(exc)) from None
        return value

    @property
    def target_label(self) -> str:
        """The target as reports name it (``hand_vel``, ``tp@set_time``), '' if none."""
        if isinstance(self.target, TrialTargetSpec):
            return self.target.label
        return self.target or ""


class TrialOverlapRepair(_Strict):
    """Clip trial boundaries that overlap by float noise: ``end := next start``."""

    tolerance_s: float = Field(
        gt=0,
        le=1.0,
        description="largest overlap (s) clipped; larger overlaps are left (and refused, "
        "unless overlapping_trials: drop)",
    )


class RepairSpec(_Strict):
    """What a card lets neurofm repair in real files; every policy is off unless given.

    What was repaired (which units, which trials, how many) is logged and stored in the
    recording's provenance under ``repairs`` (``neurofm info`` shows it).
    """

    trial_overlap: TrialOverlapRepair | None = Field(
        None, description="clip boundaries overlapping by at most tolerance_s (float noise)"
    )
    overlapping_trials: Literal["drop"] | None = Field(
        None, description="'drop': trials that still overlap another trial are dropped"
    )
    unsorted_spikes: Literal["drop_units", "sort"] | None = Field(
        None,
        description="units whose spike times go back in time: drop_units (drop those units) "
        "or sort (sort their spike times)",
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
    evaluate_on: Literal["train", "valid", "test"] = Field(
        "test",
        description="the split `evaluate` scores by default (NLB cards: valid, since NLB's "
        "test trials carry no behaviour)",
    )

    @model_validator(mode="after")
    def _fractions_sum(self) -> SplitSpec:
        if self.by == "random" and abs(sum(self.fractions) - 1.0) > 1e-6:
            raise ValueError(f"fractions {list(self.fractions)} must sum to 1")
        return self

    @field_validator("evaluate_on")
    @classmethod
    def _evaluate_on_has_data(cls, value: str, info: Any) -> str:
        # Only a value the card gives is checked here; the default (test) is checked where a
        # pipeline evaluates (load_pipeline): a card whose test split is empty may still be
        # ingested and trained on.
        data = info.data
        if "by" in data and "values" in data and "fractions" in data:
            empty = _empty_splits(
                data["by"], data["values"], data["fractions"], data.get("held_out_subjects")
            )
            if value in empty:
                raise ValueError(
                    f"{value!r} is a split no trial can land in (by: {data['by']}, values: "
                    f"{dict(data['values'])}); evaluate on a split that has data"
                )
        return value

    def empty_splits(self) -> list[str]:
        """Splits that no trial can land in, whatever the file holds.

        With ``by: column`` a split is empty when its own label is mapped away (e.g.
        ``test: drop``) and no other label is mapped to it; with ``by: random`` or ``time``
        when its fraction is 0 (and no subject is held out, for test).
        """
        return _empty_splits(self.by, self.values, self.fractions, self.held_out_subjects)


def _empty_splits(
    by: str, values: dict[str, str], fractions: Sequence[float], held_out: Any
) -> list[str]:
    names = ("train", "valid", "test")
    if by == "column":
        return [n for n in names if values.get(n, n) != n and n not in values.values()]
    return [
        n
        for n, share in zip(names, fractions, strict=True)
        if share == 0 and not (n == "test" and held_out)
    ]


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
    repairs: RepairSpec = Field(
        RepairSpec(),
        description="what to repair in the files (trial boundaries, unsorted spikes); all off "
        "unless given",
    )
    notes: str = ""

    @model_validator(mode="after")
    def _target_for_spikes(self) -> DatasetCard:
        if self.reader == "nwb" and self.fields.target is None:
            raise ValueError("fields.target is required for NWB (decoding) datasets")
        if self.splits.by == "time" and self.fields.target is None:
            raise ValueError("splits.by 'time' splits the span of fields.target; give one")
        if isinstance(self.fields.target, TrialTargetSpec) and self.reader != "nwb":
            raise ValueError("a per-trial target ({trials: ..., at: ...}) is for NWB trials")
        if isinstance(self.fields.target, TrialTargetSpec) and self.splits.by == "time":
            raise ValueError(
                "a per-trial target ({trials: ..., at: ...}) needs trials; splits.by 'time' "
                "cuts a continuous recording"
            )
        if self.reader != "nwb" and self.repairs != RepairSpec():
            raise ValueError("repairs apply to NWB files (reader: nwb)")
        return self


class PullStep(_Strict):
    """Download the card's DANDI assets or OpenNeuro files (or, with ``stream``, plan to
    stream DANDI assets)."""

    to: str = Field("raw", description="download folder, relative to the workdir")
    include: list[str] = Field(default_factory=list, description="extra glob patterns")
    stream: bool = Field(
        False, description="read over HTTP at ingest instead of downloading (DANDI only)"
    )


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
    lr: float = Field(3e-3, gt=0, allow_inf_nan=False)
    weight_decay: float = Field(1e-4, ge=0)
    unit_dropout: tuple[int, int, int] | None = Field(
        None, description="(min, mode, max) units kept per window; null disables"
    )
    seed: int = 0
    num_workers: int = Field(0, ge=0)
    recordings: list[str] = Field(default_factory=list, description="default: all with splits")
    resume: bool = Field(
        False,
        description="continue from <out>/last.ckpt when there is one (exactly: the same losses "
        "as a run that never stopped); false starts over",
    )
    checkpoint_every_n_steps: int = Field(
        0, ge=0, description="also write last.ckpt every N training steps (0: each epoch only)"
    )
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = Field(
        "auto", description="what trains: auto (a GPU when there is one), cpu or gpu"
    )
    devices: int = Field(
        1, ge=1, description="devices per node (GPUs, or CPU processes); >1 trains with DDP"
    )
    num_nodes: int = Field(
        1, ge=1, description="machines (SLURM: --nodes); each runs `devices` processes"
    )
    strategy: Literal[
        "auto", "ddp", "ddp_spawn", "ddp_fork", "ddp_notebook", "ddp_find_unused_parameters_true"
    ] = Field(
        "auto",
        description="Lightning's strategy: auto (DDP when devices x num_nodes > 1), ddp, "
        "ddp_spawn...",
    )
    precision: Literal[
        "32-true", "32", "64-true", "64", "16-mixed", "bf16-mixed", "16-true", "bf16-true"
    ] = Field("32-true", description="Lightning's precision, e.g. 32-true, 16-mixed, bf16-mixed")

    @field_validator("unit_dropout")
    @classmethod
    def _dropout_order(cls, value: tuple[int, int, int] | None) -> tuple[int, int, int] | None:
        if value is not None and not 1 <= value[0] <= value[1] <= value[2]:
            raise ValueError(f"must be (min, mode, max) with 1 <= min <= mode <= max, got {value}")
        return value

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_text(cls, value: Any) -> Any:
        # YAML reads `precision: 32` as a number
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class WienerOptions(_Strict):
    """The Wiener filter's search: every (history, alpha) pair is scored on valid R^2 per
    session and the best kept (:class:`~neurofm.baselines.decoders.WienerFilter`)."""

    alphas: list[Annotated[float, Field(ge=0)]] = Field(
        default_factory=lambda: [0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6],
        min_length=1,
        description="ridge penalties tried (on z-scored features and target)",
    )
    history: list[Annotated[float, Field(gt=0)]] = Field(
        default_factory=lambda: [0.1, 0.2, 0.3],
        min_length=1,
        description="seconds of spike history tried (multiples of bin_size)",
    )
    bin_size: float = Field(0.02, gt=0, description="spike-count bin, seconds")

    @model_validator(mode="after")
    def _history_in_bins(self) -> WienerOptions:
        for h in self.history:
            if abs(h / self.bin_size - round(h / self.bin_size)) > 1e-6:
                raise ValueError(f"history {h} s is not a multiple of bin_size {self.bin_size} s")
        return self

    @property
    def lags(self) -> list[int]:
        """The histories in bins."""
        return [round(h / self.bin_size) for h in self.history]


class GRUCandidate(_Strict):
    """One point of the GRU's search."""

    hidden: int = Field(ge=1, description="GRU width")
    lr: float = Field(gt=0, allow_inf_nan=False, description="Adam learning rate")


class GRUOptions(_Strict):
    """The GRU's budget, early stopping and search
    (:class:`~neurofm.baselines.decoders.GRUDecoder`): each candidate trains ``search_steps``
    steps, the best on valid R^2 goes on up to ``max_steps``; valid R^2 is measured every
    ``eval_every`` steps, the learning rate halves after ``lr_patience`` evaluations without
    improvement and training stops after ``patience``; the best weights are kept."""

    candidates: list[GRUCandidate] = Field(
        default_factory=lambda: [
            GRUCandidate(hidden=64, lr=3e-3),
            GRUCandidate(hidden=128, lr=3e-3),
        ],
        min_length=1,
        description="(hidden, lr) pairs searched",
    )
    max_steps: int = Field(1000, ge=1, description="steps of the chosen candidate at most")
    search_steps: int = Field(150, ge=1, description="steps of each candidate in the search")
    eval_every: int = Field(50, ge=1, description="steps between valid evaluations")
    patience: int = Field(4, ge=1, description="evaluations without improvement before stopping")
    lr_patience: int = Field(
        2, ge=1, description="evaluations without improvement before halving the learning rate"
    )
    batch_size: int = Field(32, ge=1, description="windows of 1 s per step")
    seed: int = 0


class BaselineOptions(_Strict):
    """Budgets and searches of the spike baselines (the SAMBA ridge has none to set)."""

    wiener: WienerOptions = Field(default_factory=WienerOptions)
    gru: GRUOptions = Field(default_factory=GRUOptions)


class EvaluateStep(_Strict):
    """Score the trained model (and baselines) on a split, stitched per session."""

    split: Literal["train", "valid", "test"] | None = Field(
        None, description="the split to score; default the card's splits.evaluate_on (test)"
    )
    baselines: list[Literal["wiener", "gru", "ridge"]] | None = Field(
        None,
        description="baselines scored on the same points: wiener, gru (spikes; the default "
        "for POYO) or ridge (EEG band power x HRF; the default for SAMBA)",
    )
    baseline_options: BaselineOptions = Field(
        default_factory=BaselineOptions,
        description="budgets and hyperparameter searches of the wiener and gru baselines",
    )
    baselines_during_training: bool = Field(
        True,
        description="fit POYO's spike baselines in a second process while the train step "
        "runs, where two or more cores are idle (the same scores, sooner)",
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


class ClusterSpec(_Strict):
    """Where the pull and ingest steps run: one Dask task per asset on a local cluster of
    ``workers`` processes, or on the cluster at ``scheduler``; neither: one after another."""

    workers: int | None = Field(None, ge=1, description="local Dask worker processes")
    scheduler: str | None = Field(None, description="address of a running Dask scheduler")

    @model_validator(mode="after")
    def _one_place(self) -> ClusterSpec:
        if self.workers is not None and self.scheduler is not None:
            raise ValueError("give workers or scheduler, not both")
        return self


class PipelineSpec(_Strict):
    """A runnable pipeline: a dataset card plus ordered steps."""

    name: str
    description: str = ""
    dataset: str = Field(description="card path (relative to this file) or a name in datasets/")
    workdir: str = Field("", description="output folder; default pipeline-output/<name>")
    cluster: ClusterSpec = Field(default_factory=ClusterSpec)
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
        candidates = [annotation]
        for arg in candidates:  # grows while walked: Optional, Union, Annotated, nested
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
            # Union branches (pydantic puts the branch's tag in the path) are not keys.
            loc = tuple(p for p in err["loc"] if not str(p).startswith(("function-", "~")))
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


_CHECKED_FIELDS: dict[type, list[tuple[str, TypeAdapter]]] = {}


def check_fields(obj: Any) -> None:
    """Check (and coerce) a dataclass instance's constrained fields: those annotated
    ``Annotated[type, Field(...)]`` or ``Annotated[type, AfterValidator(...)]``.

    For config dataclasses built in Python as well as from files (call it in
    ``__post_init__``); fields without constraints are left as they are.

    Raises
    ------
    SpecError
        One line per bad field, naming the class and the field.
    """
    import typing

    cls = type(obj)
    checks = _CHECKED_FIELDS.get(cls)
    if checks is None:
        hints = typing.get_type_hints(cls, include_extras=True)
        checks = _CHECKED_FIELDS[cls] = [
            (f.name, TypeAdapter(hints[f.name]))
            for f in dataclasses.fields(cls)
            if typing.get_origin(hints[f.name]) is Annotated
        ]
    problems = []
    for name, adapter in checks:
        try:
            object.__setattr__(obj, name, adapter.validate_python(getattr(obj, name)))
        except ValidationError as exc:
            for err in exc.errors():
                msg = err["msg"].removeprefix("Value error, ")
                problems.append(f"{cls.__name__}: {name}: {msg} (got {err.get('input')!r})")
    if problems:
        raise SpecError("; ".join(problems))


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


def card_folders() -> list[Path]:
    """Where cards are found by name: ``./datasets``, then the folder of cards beside neurofm."""
    return [Path("datasets"), Path(__file__).resolve().parents[1] / "datasets"]


def find_card(name_or_path: str | os.PathLike[str]) -> Path:
    """A card's file: the path itself if it exists or names a YAML file, else the card of that
    name (``mc_maze``) in :func:`card_folders`.

    Raises
    ------
    SpecError
        No such file, and no card of that name.
    """
    path = Path(name_or_path)
    if path.exists() or path.suffix in (".yaml", ".yml") or len(path.parts) > 1:
        return path
    for folder in card_folders():
        if (folder / f"{path.name}.yaml").is_file():
            return folder / f"{path.name}.yaml"
    looked = ", ".join(str(f) for f in card_folders())
    raise SpecError(f"{name_or_path}: no such card file, and no card of that name in {looked}")


def load_card(path: str | os.PathLike[str]) -> DatasetCard:
    """Load and validate a dataset card: a YAML file, or a card's name (``"mc_maze"``, looked
    up by :func:`find_card`)."""
    return load_yaml(find_card(path), DatasetCard)


def load_pipeline(
    path: str | os.PathLike[str], overrides: Sequence[str] = ()
) -> tuple[PipelineSpec, DatasetCard, Path]:
    """Load a pipeline, its dataset card, and resolve its working folder.

    The card is looked up relative to the pipeline file, then as ``datasets/<name>.yaml``
    next to the pipeline's folder.

    Parameters
    ----------
    path : path-like
        The pipeline YAML file.
    overrides : sequence of str
        ``KEY=VALUE`` changes applied before validation (see :func:`apply_overrides`); keys
        starting with ``card.`` change the dataset card.

    Raises
    ------
    SpecError
        A problem in the file, the card or an override, naming the key.
    """
    path = Path(path)
    ours = [o for o in overrides if not _key_of(o).startswith("card.")]
    theirs = [o.removeprefix("card.") for o in overrides if _key_of(o).startswith("card.")]
    raw = read_yaml(path)
    if isinstance(raw, dict) and "source" in raw and "steps" not in raw:
        raise SpecError(
            f"{path}: a dataset card, not a pipeline (it has source: and no steps:); a "
            "pipeline names its card under dataset: (see pipelines/demo.yaml), and `neurofm "
            "datasets show NAME` shows a card"
        )
    spec = validate(PipelineSpec, apply_overrides(raw, ours, path), _label(path, ours))
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
    card = validate(
        DatasetCard,
        apply_overrides(read_yaml(card_path), theirs, card_path),
        _label(card_path, [f"card.{o}" for o in theirs]),
    )
    _check_evaluated_splits(spec, card, path, card_path)
    return spec, card, workdir


def check_model_files(
    spec: PipelineSpec,
    path: str | os.PathLike[str],
    overrides: Sequence[str] = (),
    only: Collection[str] | None = None,
) -> None:
    """A train step's model config that is not there, named before any step runs (not after
    pulling and ingesting). ``only``: the kinds of step that will run (default all).

    Raises
    ------
    SpecError
        Naming the step's key and where the file was looked for.
    """
    path = Path(path)
    ours = [o for o in overrides if not _key_of(o).startswith("card.")]
    for i, step in enumerate(spec.steps):
        model = getattr(step.options, "model", None)
        if step.kind != "train" or (only is not None and "train" not in only) or not model:
            continue
        if not (path.parent / model).is_file():
            raise SpecError(
                f"{_label(path, ours)}: steps[{i}].train.model: no model config {model!r} "
                f"(looked for {(path.parent / model).resolve()}; a path relative to the "
                "pipeline file)"
            )


def _check_evaluated_splits(
    spec: PipelineSpec, card: DatasetCard, path: Path, card_path: Path
) -> None:
    """An evaluate step scoring a split the card leaves empty fails now, not after training."""
    empty = card.splits.empty_splits()
    for i, step in enumerate(spec.steps):
        if step.evaluate is None:
            continue
        split = step.evaluate.split or card.splits.evaluate_on
        if split not in empty:
            continue
        if step.evaluate.split is None:
            raise SpecError(
                f"{card_path}: splits.evaluate_on: the pipeline {path.name} evaluates the "
                f"{split!r} split (the default), but dataset card {card.name!r} leaves it "
                f"empty (splits.values: {dict(card.splits.values)}); set splits.evaluate_on "
                "to a split with data (e.g. valid)"
            )
        raise SpecError(
            f"{path}: steps[{i}].evaluate.split: {split!r} is empty under dataset card "
            f"{card.name!r} (splits.values: {dict(card.splits.values)}); evaluate another split"
        )


# --------------------------------------------------------------------------------------------
# command-line overrides: KEY=VALUE
# --------------------------------------------------------------------------------------------


#: A number in exponent notation (``1e-3``), which YAML 1.1 reads as a string.
_EXPONENT = r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+"


def _key_of(override: str) -> str:
    return override.split("=", 1)[0].strip()


def _label(path: Path, overrides: Sequence[str]) -> str:
    """How errors name a spec changed by overrides: the file, and the overrides."""
    return f"{path} (with {' '.join(overrides)})" if overrides else str(path)


def apply_overrides(
    data: Any, overrides: Sequence[str], path: str | os.PathLike[str] = "<spec>"
) -> Any:
    """A copy of a parsed spec with ``KEY=VALUE`` overrides applied (validate it afterwards).

    ``KEY`` is a dotted path of mapping keys (``workdir``, ``steps.train.epochs``). In a list
    of pipeline steps a step is named by its kind (``steps.train``) or by its position
    (``steps.2`` or ``steps[2]``). ``VALUE`` is read as YAML, so ``5`` is a number, ``[wiener]``
    a list and ``null`` nothing. A key the spec does not know is left for validation to
    report (a :class:`SpecError` naming it and the keys expected there).

    Parameters
    ----------
    data : Any
        The parsed YAML (a mapping).
    overrides : sequence of str
        ``KEY=VALUE`` strings.
    path : path-like
        The spec file, for error messages.

    Returns
    -------
    Any
        The changed copy (``data`` itself is not modified).

    Raises
    ------
    SpecError
        An override without ``=``, a value that is not YAML, or a path through something that
        is not a mapping (or a list of steps).
    """
    import copy
    import re

    import yaml

    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SpecError(
                f"{path}: override {item!r}: expected KEY=VALUE, e.g. steps.train.epochs=5"
            )
        try:
            value = yaml.safe_load(text) if text.strip() else ""
            # YAML 1.1 reads 1e-3 as a string; a number is meant
            if isinstance(value, str) and re.fullmatch(_EXPONENT, value):
                value = float(value)
        except yaml.YAMLError as exc:
            raise SpecError(
                f"{path}: override {item!r}: the value is not valid YAML ({exc})"
            ) from None
        if not isinstance(data, dict):
            raise SpecError(f"{path}: expected a mapping of keys at the top level, got {data!r}")
        parts = [p for p in re.split(r"\.|\[(\d+)\]", key) if p]
        node: Any = data
        where: list[str] = []
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                if last:
                    raise SpecError(f"{path}: override {item!r}: name a key inside the step")
                node = _list_item(node, part, path, item, where)
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                elif node.get(part) is None:
                    node[part] = {}
                node = node[part]
            else:
                raise SpecError(
                    f"{path}: override {item!r}: {'.'.join(where)} is {node!r}, not a mapping "
                    "of keys"
                )
            where.append(part)
    return data


def _list_item(items: list[Any], part: str, path: Any, item: str, where: list[str]) -> Any:
    """The step ``part`` names in a list of steps: an index, or a step kind (``train``)."""
    if part.isdigit():
        if int(part) >= len(items):
            raise SpecError(f"{path}: override {item!r}: {'.'.join(where)} has {len(items)} items")
        return items[int(part)]
    found = [s for s in items if isinstance(s, dict) and part in s]
    if len(found) != 1:
        kinds = [next(iter(s)) for s in items if isinstance(s, dict) and s]
        how = "no" if not found else "more than one"
        raise SpecError(
            f"{path}: override {item!r}: {'.'.join(where)} has {how} {part!r} step "
            f"(steps: {', '.join(map(str, kinds))}; or give a position, e.g. steps.0)"
        )
    step = found[0]
    if step[part] is None:  # `- pull:` with no options
        step[part] = {}
    return step[part]
