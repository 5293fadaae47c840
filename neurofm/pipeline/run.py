"""Run a pipeline spec (``pipelines/*.yaml``): pull -> ingest -> train -> evaluate.

The spec's dataset card names the source and the split rules; its steps say what to do.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurofm.errors import NeuroFMError
from neurofm.pipeline.ingest import ingest, ingest_dandi, ingest_pulled
from neurofm.progress import format_duration, progress_note

log = logging.getLogger(__name__)

__all__ = ["PipelineResult", "run_pipeline"]


@dataclass
class PipelineResult:
    """Outcome of :func:`run_pipeline`: one line per step, and the reports."""

    name: str
    workdir: Path
    summary: list[str] = field(default_factory=list)
    reports: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(getattr(r, "ok", True) for r in self.reports.values())


def run_pipeline(
    path: str | os.PathLike[str],
    *,
    api_url: str | None = None,
    workdir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    only: tuple[str, ...] | None = None,
    overrides: Sequence[str] = (),
    openneuro_url: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    _clients: _Clients | None = None,
) -> PipelineResult:
    """Run the steps of a pipeline spec in order.

    Parameters
    ----------
    path : str or Path
        The pipeline YAML file.
    api_url : str, optional
        DANDI API URL for the card's source (default ``$NEUROFM_DANDI_API`` or the archive).
    workdir : str or Path, optional
        Override the spec's output folder.
    progress : bool
        Show progress bars.
    only : tuple of str, optional
        Run only these step kinds (e.g. ``("train", "evaluate")`` for ``neurofm train``); the
        catalog of the spec's ingest step is still used.
    overrides : sequence of str
        ``KEY=VALUE`` changes of the spec (``steps.train.epochs=5``) or of its dataset card
        (``card.splits.seed=1``), validated like the files
        (:func:`neurofm.specs.apply_overrides`).
    openneuro_url : str, optional
        OpenNeuro server URL for a card whose source is ``openneuro:`` (default
        ``$NEUROFM_OPENNEURO_URL`` or https://openneuro.org).
    workers, scheduler : optional
        Run the pull and ingest steps on Dask, one task per asset: a local cluster of
        ``workers`` processes, or the cluster at ``scheduler`` (default: the spec's
        ``cluster:`` section; neither: one after another).
    """
    if _clients is None:  # a Dask client, if one is asked for, lives as long as this run
        with ExitStack() as stack:
            return run_pipeline(
                path,
                api_url=api_url,
                workdir=workdir,
                progress=progress,
                only=only,
                overrides=overrides,
                openneuro_url=openneuro_url,
                _clients=_Clients(stack, workers, scheduler),
            )
    from neurofm.sources import dandi
    from neurofm.specs import check_model_files, load_pipeline

    spec, card, spec_workdir = load_pipeline(path, overrides)
    check_model_files(spec, path, overrides, only)
    work = Path(workdir) if workdir is not None else spec_workdir
    result = PipelineResult(spec.name, work)
    source = card.source
    pulled = None
    generated: Path | None = None
    catalog = work / "catalog"
    checkpoint: Path | None = None
    background = None  # the evaluate step's baselines, fitted while the train step runs
    # A header per step on the progress stream (stderr), with the time spent so far.
    n_steps = sum(only is None or s.kind in only for s in spec.steps)
    done, t_start = 0, time.perf_counter()
    for step in spec.steps:
        opts = step.options
        if only is not None and step.kind not in only:
            if step.kind == "ingest":
                catalog = work / opts.out
            elif step.kind == "pull" and source.openneuro is not None:
                generated = work / opts.to  # pulled by an earlier run
            continue
        done += 1
        elapsed = time.perf_counter() - t_start
        progress_note(
            f"[{done}/{n_steps}] {step.kind}"
            + (f" (after {format_duration(elapsed)})" if done > 1 else ""),
            disable=not progress,
        )
        if step.kind == "pull":
            if source.synthetic is not None:
                generated = work / opts.to
                result.summary.append(_synthesize(source.synthetic, generated, progress))
            elif source.openneuro is not None:
                generated = work / opts.to
                result.summary.append(
                    _pull_openneuro(source, opts, generated, openneuro_url, progress, result)
                )
            elif source.dandi is None:
                result.summary.append(f"pull: skipped (local source {source.local})")
            elif opts.stream:
                result.summary.append("pull: streaming at ingest (nothing downloaded)")
            else:
                raw = work / opts.to
                include = [*source.include, *opts.include] or None
                client = _clients.get(spec)
                if client is not None:
                    from neurofm.pipeline.cluster import pull_on_client

                    pulled = pull_on_client(
                        client,
                        source.ref,
                        raw,
                        include=include,
                        api_url=api_url,
                        progress=progress,
                    )
                else:
                    pulled = dandi.pull(
                        source.ref, raw, include=include, api_url=api_url, progress=progress
                    )
                result.reports["pull"] = pulled
                result.summary.append(
                    f"pull: {len(pulled.downloaded)} downloaded, {len(pulled.skipped)} up to "
                    f"date, {len(pulled.failed)} failed ({pulled.bytes_transferred:,} bytes "
                    f"transferred) -> {raw}"
                )
        elif step.kind == "ingest":
            out = work / opts.out
            kw = {
                "force": opts.force,
                "progress": progress,
                "card": card,
                "client": _clients.get(spec),
            }
            if source.local is not None:
                report = ingest(source.local, out, **kw)
            elif source.synthetic is not None:
                if generated is None:
                    raise NeuroFMError(
                        f"{path}: the card's source is synthetic: a pull step must generate it "
                        "before the ingest step"
                    )
                report = ingest(generated, out, **kw)
            elif source.openneuro is not None:
                if generated is None or not generated.is_dir():
                    raise NeuroFMError(
                        f"{path}: the card's source is OpenNeuro ({source.ref}): a pull step "
                        "must download it before the ingest step"
                    )
                report = ingest(generated, out, **kw)  # the pulled BIDS root
            elif pulled is not None:
                report = ingest_pulled(pulled, out, **kw)
            else:  # DANDI without a download step: stream
                _, report = ingest_dandi(
                    source.ref,
                    out,
                    include=source.include or None,
                    stream=True,
                    api_url=api_url,
                    **kw,
                )
            result.reports["ingest"] = report
            if report.failed and not (report.ingested or report.skipped):
                # Stop here with the files' own reasons: the next step would only say that
                # there is no catalog, which sends the user the wrong way.
                reasons = "; ".join(f"{source}: {why}" for source, why in report.failed)
                raise NeuroFMError(f"ingest: no file could be ingested ({reasons})")
            result.summary.append(
                f"ingest: {len(report.ingested)} ingested, {len(report.skipped)} up to date, "
                f"{len(report.failed)} failed -> {out}"
            )
            catalog = out
        elif step.kind == "train":
            from neurofm.pipeline.steps import run_train_step, start_baselines_during_training
            from neurofm.training.trainer import check_accelerator

            check_accelerator(opts.accelerator, opts.devices)  # before the baselines start
            evaluate = _next_evaluate(spec, step, only)
            if evaluate is not None:
                background = start_baselines_during_training(
                    opts, evaluate, card, catalog, Path(path).parent
                )
                if background is not None:  # stopped if the run ends before evaluating
                    _clients.stack.callback(background.cancel)
                    progress_note(
                        f"  fitting the baselines ({', '.join(background.request.names)}) "
                        "in a second process meanwhile",
                        disable=not progress,
                    )
            checkpoint, line = run_train_step(
                opts, card, catalog, work, Path(path).parent, progress=progress
            )
            result.summary.append(line)
            from neurofm.training.trainer import global_rank

            if global_rank() != 0:
                # A DDP rank other than 0 (torchrun, srun, Lightning's launcher): its share of
                # training is done; evaluation and reports are rank 0's, written once.
                break
        elif step.kind == "evaluate":
            from neurofm.pipeline.steps import run_evaluate_step

            if checkpoint is None:
                checkpoint = _last_checkpoint(spec, work)
            if background is not None and background.running:
                progress_note(
                    "  the baselines' second process is still fitting: their scores come "
                    "after POYO's",
                    disable=not progress,
                )
            report, lines = run_evaluate_step(opts, card, catalog, checkpoint, work, background)
            background = None
            result.reports["evaluate"] = report
            result.summary.extend(lines)
    return result


class _Clients:
    """The run's Dask client, opened on first use (by the pull or ingest step) from the
    command line's --workers/--scheduler, else the spec's ``cluster:``; None for neither."""

    def __init__(self, stack: ExitStack, workers: int | None, scheduler: str | None) -> None:
        self.stack, self.workers, self.scheduler = stack, workers, scheduler
        self.opened, self.client = False, None

    def get(self, spec: Any) -> Any:
        if not self.opened:
            from neurofm.pipeline.cluster import dask_client

            workers, scheduler = self.workers, self.scheduler
            if workers is None and scheduler is None:
                workers, scheduler = spec.cluster.workers, spec.cluster.scheduler
            self.client = self.stack.enter_context(dask_client(workers, scheduler))
            self.opened = True
        return self.client


def _pull_openneuro(
    source: Any, opts: Any, raw: Path, url: str | None, progress: bool, result: PipelineResult
) -> str:
    """Pull the card's OpenNeuro snapshot into ``raw``; stop the pipeline if a file failed (a
    BIDS dataset with a file missing would ingest without a run, or with a wrong sidecar)."""
    from neurofm.errors import SourceError
    from neurofm.sources import openneuro

    if opts.stream:
        raise NeuroFMError(
            f"pull: stream applies to DANDI sources only; {source.ref} is downloaded whole"
        )
    include = [*source.include, *opts.include] or None
    report = openneuro.pull(source.ref, raw, include=include, url=url, progress=progress)
    result.reports["pull"] = report
    if report.failed:
        reasons = "; ".join(reason for _, reason in report.failed)
        raise SourceError(
            f"pull: {len(report.failed)} of {len(report.files)} files of {report.label} failed "
            f"({reasons}); the verified files are kept, re-run to fetch the others"
        )
    return (
        f"pull: {report.label}: {len(report.downloaded)} downloaded, {len(report.skipped)} up "
        f"to date ({report.bytes_transferred:,} bytes transferred) -> {raw}"
    )


def _synthesize(source: Any, out: Path, progress: bool) -> str:
    """Generate the card's synthetic dataset into ``out`` unless it is there with the same
    parameters (the generator is deterministic, so the files would be identical)."""
    import json

    params = source.model_dump()
    stamp = out / ".neurofm-synthetic.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == params:
        return f"pull: synthetic {source.kind} dataset up to date -> {out}"
    if source.kind == "eeg-fmri":
        from neurofm.synthetic.eeg_fmri import generate_eeg_fmri_dataset

        runs = generate_eeg_fmri_dataset(
            out,
            n_subjects=source.subjects,
            n_runs=source.runs,
            duration=source.duration,
            tr=source.tr,
            n_parcels=source.parcels,
            seed=source.seed,
            bold_band=source.bold_band,
            progress=progress,
        )
    else:  # pragma: no cover - the spec only admits the kinds above
        raise NeuroFMError(f"synthetic source kind {source.kind!r} is not known")
    stamp.write_text(json.dumps(params, indent=2))
    return f"pull: generated a synthetic {source.kind} dataset ({len(runs)} runs) -> {out}"


def _next_evaluate(spec: Any, train: Any, only: tuple[str, ...] | None) -> Any:
    """The options of the evaluate step that follows ``train`` and will run, else None."""
    steps = list(spec.steps)
    after = next(i for i, step in enumerate(steps) if step is train) + 1
    for step in steps[after:]:
        if step.kind == "train":
            return None
        if step.kind == "evaluate" and (only is None or "evaluate" in only):
            return step.options
    return None


def _last_checkpoint(spec: Any, work: Path) -> Path:
    """The checkpoint of the pipeline's train step, from an earlier run."""
    for step in spec.steps:
        if step.kind == "train":
            ckpt = work / step.options.out / "last.ckpt"
            if ckpt.is_file():
                return ckpt
            raise NeuroFMError(f"{ckpt}: no trained model yet; run the train step first")
    raise NeuroFMError("the evaluate step needs a train step in the same pipeline")
