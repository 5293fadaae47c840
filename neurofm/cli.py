"""The ``neurofm`` command.

Only argparse is imported at module level: every subcommand imports what it needs when it runs,
so ``neurofm --help`` answers in a fraction of a second (torch + pynwb + lightning alone cost
~8 s to import).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from neurofm import __version__
from neurofm.errors import NeuroFMError

log = logging.getLogger("neurofm")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neurofm",
        description="From neuroscience recordings (NWB, DANDI, EEG, fMRI) to foundation models.",
    )
    parser.add_argument("--version", action="version", version=f"neurofm {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    synth = sub.add_parser("synth", help="generate synthetic datasets with ground truth")
    synth_sub = synth.add_subparsers(dest="dataset", metavar="DATASET", required=True)
    reach = synth_sub.add_parser(
        "reaching", help="multi-session centre-out reaching, written as NWB in DANDI layout"
    )
    reach.add_argument("--out", required=True, type=Path, help="output folder (a dandiset)")
    reach.add_argument("--subjects", type=int, default=2, help="number of subjects (default 2)")
    reach.add_argument("--sessions", type=int, default=3, help="sessions per subject (default 3)")
    reach.add_argument("--trials", type=int, default=60, help="trials per session (default 60)")
    reach.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    eeg_fmri = synth_sub.add_parser(
        "eeg-fmri",
        help="simultaneous EEG-fMRI (BrainVision + BOLD NIfTI) as a BIDS dataset, with the "
        "atlas and ground truth under derivatives/",
    )
    eeg_fmri.add_argument("--out", required=True, type=Path, help="output folder (BIDS root)")
    eeg_fmri.add_argument("--subjects", type=int, default=2, help="number of subjects (default 2)")
    eeg_fmri.add_argument("--runs", type=int, default=1, help="runs per subject (default 1)")
    eeg_fmri.add_argument(
        "--duration", type=float, default=240.0, help="scanning time per run, s (default 240)"
    )
    eeg_fmri.add_argument("--tr", type=float, default=2.0, help="repetition time, s (default 2)")
    eeg_fmri.add_argument("--parcels", type=int, default=20, help="parcels (default 20)")
    eeg_fmri.add_argument(
        "--bold-band",
        default="gamma",
        choices=["alpha", "beta", "gamma"],
        help="band whose envelope drives BOLD (default gamma)",
    )
    eeg_fmri.add_argument(
        "--bold-noise", type=float, default=0.01, help="voxel noise SD / baseline (default 0.01)"
    )
    eeg_fmri.add_argument(
        "--eeg-noise", type=float, default=0.2, help="sensor noise / signal RMS (default 0.2)"
    )
    eeg_fmri.add_argument("--seed", type=int, default=0, help="random seed (default 0)")

    pull = sub.add_parser("pull", help="download a dandiset's NWB assets, verified")
    pull.add_argument("ref", help="dandi:<id>[@<version>], e.g. dandi:000128 or dandi:000128@draft")
    pull.add_argument("--to", required=True, type=Path, help="download folder")
    _dandi_options(pull)

    ing = sub.add_parser(
        "ingest", help="read NWB, EEG or NIfTI files, a BIDS dataset or a dandiset into a catalog"
    )
    ing.add_argument(
        "src",
        help="an .nwb, EEG (.vhdr .edf .bdf .set .fif...) or .nii[.gz] file, a folder of them, "
        "a BIDS dataset, or dandi:<id>[@<version>]",
    )
    ing.add_argument("--out", required=True, type=Path, help="catalog folder")
    ing.add_argument("--force", action="store_true", help="re-ingest up-to-date files")
    ing.add_argument("--to", type=Path, help="download folder for dandi: sources")
    _dandi_options(ing)
    ing.add_argument(
        "--atlas",
        type=Path,
        help="parcellation NIfTI for fMRI (default for BIDS: the one under derivatives/)",
    )
    ing.add_argument(
        "--subject", action="append", metavar="LABEL", help="BIDS subject to ingest (repeatable)"
    )
    ing.add_argument(
        "--eeg-preprocessing",
        type=Path,
        metavar="YAML",
        help="EEG preprocessing chain (bad_channels, notch, l_freq, h_freq, reference, resample)",
    )
    ing.add_argument(
        "--standardize",
        choices=["zscore_sample", "zscore", "psc"],
        help="standardise parcel time series (default: raw parcel means)",
    )
    ing.add_argument(
        "--confounds", metavar="fmriprep|TSV", help="confounds to regress out of the BOLD"
    )

    train = sub.add_parser("train", help="run the train (and evaluate) steps of a pipeline")
    train.add_argument("pipeline", type=Path, help="pipeline YAML file with a train step")
    train.add_argument("--workdir", type=Path, help="override the spec's output folder")

    evaluate = sub.add_parser(
        "evaluate",
        help="score a POYO (stitched R^2) or SAMBA (per-parcel r, with the ridge baseline) "
        "checkpoint on a catalog",
    )
    evaluate.add_argument("checkpoint", type=Path, help="a .ckpt written by neurofm train")
    evaluate.add_argument("catalog", type=Path, help="catalog folder with split domains")
    evaluate.add_argument("--split", default="test", choices=["train", "valid", "test"])
    evaluate.add_argument("--target", help="behaviour signal (default: the one trained on)")
    evaluate.add_argument(
        "--plot", type=Path, help="predicted-vs-true plot (POYO: a PNG; SAMBA: a folder)"
    )
    evaluate.add_argument("--json", action="store_true", help="print the R^2 as JSON")

    ft = sub.add_parser("finetune", help="adapt a POYO checkpoint to a new session")
    ft.add_argument("checkpoint", type=Path, help="pretrained POYO checkpoint")
    ft.add_argument("catalog", type=Path, help="catalog with the new session (and its splits)")
    ft.add_argument("--mode", choices=["unit-id", "full", "gradual"], default="unit-id")
    ft.add_argument("--trials", type=int, help="labelled trials to train on (default all)")
    ft.add_argument("--recording", help="recording id (default: the catalog's only one)")
    ft.add_argument("--epochs", type=int, default=30)
    ft.add_argument("--lr", type=float, default=3e-3)
    ft.add_argument("--out", type=Path, required=True, help="output folder (checkpoint, logs)")

    run = sub.add_parser("run", help="run a pipeline spec (pipelines/*.yaml)")
    run.add_argument("pipeline", type=Path, help="pipeline YAML file")
    run.add_argument("--workdir", type=Path, help="override the spec's output folder")
    run.add_argument("--api-url", help=f"DANDI API URL (default ${ENV_API} or the archive)")

    info = sub.add_parser("info", help="summarise a recording (.h5) or a catalog folder")
    info.add_argument("path", type=Path)
    info.add_argument("--json", action="store_true", help="print one JSON document")

    analyze = sub.add_parser("analyze", help="run an analysis config (tables + plots)")
    studies = analyze.add_subparsers(dest="study", metavar="STUDY", required=True)
    for study, text in (
        ("learning-regime", "initial-weight rank and rich vs lazy learning"),
        ("bias-only", "random weights, learned biases (feed-forward and recurrent)"),
    ):
        one = studies.add_parser(study, help=text)
        example = f"pipelines/{study.replace('-', '_')}.yaml"
        one.add_argument("config", type=Path, help=f"analysis YAML, e.g. {example}")
        one.add_argument("--out", type=Path, help="results folder (default: the config's out)")
        one.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


ENV_API = "NEUROFM_DANDI_API"


def _dandi_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--include", action="append", metavar="GLOB", help="only assets matching (repeatable)"
    )
    parser.add_argument(
        "--stream",
        action="store_true",
        help="read assets over HTTP range requests into recordings instead of downloading them",
    )
    parser.add_argument("--api-url", help=f"DANDI API URL (default ${ENV_API} or the archive)")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``neurofm`` console script; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # The dandi client logs each transfer and HTTP error itself (it reads this variable
        # when imported); our own report is one clear line per problem.
        os.environ.setdefault("DANDI_LOG_LEVEL", "CRITICAL")
    if args.command is None:
        parser.print_help()
        return 0
    try:
        code = {
            "synth": _synth,
            "pull": _pull,
            "ingest": _ingest,
            "run": _run,
            "train": _train,
            "evaluate": _evaluate,
            "finetune": _finetune,
            "info": _info,
            "analyze": _analyze,
        }[args.command](args)
        sys.stdout.flush()  # a closed pipe (`neurofm info C --json | head`) fails here
        return code
    except BrokenPipeError:
        # The reader went away: stop quietly, and keep Python's exit-time flush from failing.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports it
    except NeuroFMError as exc:
        print(f"neurofm: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("neurofm: interrupted", file=sys.stderr)
        return 130


# ---- synth ---------------------------------------------------------------------------------


def _synth(args: argparse.Namespace) -> int:
    if args.dataset == "eeg-fmri":
        from neurofm.synthetic.eeg_fmri import generate_eeg_fmri_dataset

        runs = generate_eeg_fmri_dataset(
            args.out,
            n_subjects=args.subjects,
            n_runs=args.runs,
            duration=args.duration,
            tr=args.tr,
            n_parcels=args.parcels,
            seed=args.seed,
            bold_band=args.bold_band,
            bold_noise=args.bold_noise,
            eeg_noise=args.eeg_noise,
        )
        volumes = sum(r.n_volumes for r in runs)
        print(f"wrote {len(runs)} EEG-fMRI runs ({volumes} volumes) as BIDS to {args.out}")
        return 0
    from neurofm.synthetic.reaching import generate_reaching_dataset

    sessions = generate_reaching_dataset(
        args.out,
        n_subjects=args.subjects,
        n_sessions=args.sessions,
        seed=args.seed,
        n_trials=args.trials,
    )
    total = sum(s.n_spikes for s in sessions)
    print(f"wrote {len(sessions)} sessions ({total:,} spikes) to {args.out}")
    return 0


# ---- ingest --------------------------------------------------------------------------------


def _pull(args: argparse.Namespace) -> int:
    from neurofm.sources.dandi import pull

    if args.stream:
        # Nothing is downloaded whole: the assets are read over HTTP (only the bytes the NWB
        # reader needs) straight into recordings, so --to becomes a catalog.
        from neurofm.pipeline import ingest_dandi

        _, ingested = ingest_dandi(
            args.ref, args.to, include=args.include, stream=True, api_url=args.api_url
        )
        _print_ingest(ingested, args.to)
        return 0 if ingested.ok else 1
    report = pull(args.ref, args.to, include=args.include, api_url=args.api_url)
    for _, reason in report.failed:
        print(f"neurofm: error: {reason}", file=sys.stderr)
    print(
        f"dandi:{report.dandiset}@{report.version}: {len(report.downloaded)} downloaded, "
        f"{len(report.skipped)} already present and verified, {len(report.failed)} failed "
        f"({report.bytes_transferred:,} bytes transferred) -> {args.to}"
    )
    return 0 if report.ok else 1


def _ingest(args: argparse.Namespace) -> int:
    from neurofm.pipeline import ingest, ingest_dandi
    from neurofm.sources.dandi import is_dandi_ref

    local_only = (
        args.atlas,
        args.subject,
        args.eeg_preprocessing,
        args.standardize,
        args.confounds,
    )
    if is_dandi_ref(args.src):
        if any(v is not None for v in local_only):
            raise NeuroFMError(
                "--atlas, --subject, --eeg-preprocessing, --standardize and --confounds apply "
                "to local EEG, NIfTI and BIDS sources only"
            )
        _, report = ingest_dandi(
            args.src,
            args.out,
            to=args.to,
            include=args.include,
            stream=args.stream,
            api_url=args.api_url,
            force=args.force,
        )
    else:
        if args.include or args.stream or args.api_url or args.to:
            raise NeuroFMError(
                "--include, --stream, --api-url and --to apply to dandi: sources only"
            )
        eeg_options: dict[str, Any] = {}
        if args.eeg_preprocessing is not None:
            from neurofm.readers.eeg import load_preprocessing

            eeg_options["preprocessing"] = load_preprocessing(args.eeg_preprocessing)
        fmri_options: dict[str, Any] = {}
        if args.standardize:
            fmri_options["standardize"] = args.standardize
        if args.confounds:
            fmri_options["confounds"] = args.confounds
        report = ingest(
            args.src,
            args.out,
            force=args.force,
            atlas=args.atlas,
            subjects=args.subject,
            eeg_options=eeg_options,
            fmri_options=fmri_options,
        )
    _print_ingest(report, args.out)
    return 0 if report.ok else 1


def _print_ingest(report: Any, out: Path) -> None:
    for path, rec_id in report.ingested:
        print(f"ingested  {path} -> {rec_id}")
    for path, rec_id in report.skipped:
        print(f"skipped   {path} (up to date: {rec_id})")
    for _, reason in report.failed:
        print(f"neurofm: error: {reason}", file=sys.stderr)
    print(
        f"{len(report.ingested)} ingested, {len(report.skipped)} up to date, "
        f"{len(report.failed)} failed -> {out}"
    )


def _train(args: argparse.Namespace) -> int:
    from neurofm.pipeline import run_pipeline

    result = run_pipeline(args.pipeline, workdir=args.workdir, only=("train", "evaluate"))
    print(f"pipeline {result.name} -> {result.workdir}")
    for line in result.summary:
        print(f"  {line}")
    return 0 if result.ok else 1


def _evaluate(args: argparse.Namespace) -> int:
    from neurofm.evaluation.poyo import evaluate_poyo
    from neurofm.evaluation.reports import results_table
    from neurofm.training.poyo import load_poyo
    from neurofm.training.samba import is_samba_checkpoint

    if is_samba_checkpoint(args.checkpoint):
        return _evaluate_samba(args)

    model, scaler, cfg = load_poyo(args.checkpoint)
    result = evaluate_poyo(model, scaler, args.catalog, args.target or cfg.target, args.split)
    if args.plot:
        from neurofm.viz.decoding import plot_predictions

        plot_predictions(result, args.plot)
    if args.json:
        print(json.dumps({"split": args.split, "r2": result.r2, "mean_r2": result.mean_r2}))
    else:
        print(f"stitched R^2 on the {args.split} split of {args.catalog}")
        print(results_table({"POYO": result.r2}))
    return 0


def _evaluate_samba(args: argparse.Namespace) -> int:
    from neurofm.evaluation.checkpoint import evaluate_samba_checkpoint
    from neurofm.specs import EvaluateStep

    options = EvaluateStep(split=args.split, baselines=None, plot=args.plot is not None)
    work = args.plot if args.plot is not None else args.checkpoint.parent
    report, lines = evaluate_samba_checkpoint(args.checkpoint, args.catalog, options, work)
    if args.json:
        print(json.dumps(report.metrics))
    else:
        print("\n".join(lines))
    return 0


def _finetune(args: argparse.Namespace) -> int:
    from neurofm.evaluation.fewshot import session_r2
    from neurofm.training.finetune import finetune

    result = finetune(
        args.checkpoint,
        args.catalog,
        args.out,
        recording_id=args.recording,
        mode=args.mode,
        trials=args.trials,
        epochs=args.epochs,
        lr=args.lr,
        score=session_r2,
    )
    print(f"fine-tuned ({result.mode}) on {result.recording_id} with {result.n_trials} trials")
    print(f"  trains: {', '.join(result.trainable)}")
    print(f"  test R^2 (stitched): {result.mean_r2:.3f}")
    print(f"  checkpoint: {result.checkpoint}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from neurofm.pipeline import run_pipeline

    result = run_pipeline(args.pipeline, api_url=args.api_url, workdir=args.workdir)
    for name, report in result.reports.items():
        for _, reason in getattr(report, "failed", []):
            print(f"neurofm: error: {name}: {reason}", file=sys.stderr)
    print(f"pipeline {result.name} -> {result.workdir}")
    for line in result.summary:
        print(f"  {line}")
    return 0 if result.ok else 1


# ---- analyze -------------------------------------------------------------------------------


def _analyze(args: argparse.Namespace) -> int:
    from neurofm.analysis.results import format_table

    if args.study == "learning-regime":
        from neurofm.analysis.learning_regime import run_learning_regime as run
    else:
        from neurofm.analysis.bias_only import run_bias_only as run
    result = run(args.config, out=args.out, progress=not args.no_progress)
    for name, rows in result.tables.items():
        if name == "results" or name == "linear_theory":
            continue  # per-seed rows: in the CSV; the summaries are printed
        columns = [c for c in rows[0] if not c.endswith("_sd")] if rows else None
        print(f"== {name}")
        print(format_table(rows, columns))
    print(f"results -> {result.out}")
    return 0


# ---- info ----------------------------------------------------------------------------------


def _info(args: argparse.Namespace) -> int:
    from neurofm.data import Catalog, Recording
    from neurofm.errors import ReaderError

    path: Path = args.path
    if path.is_dir():
        catalog = Catalog(path)
        summaries = []
        for rec_id in catalog.ids:
            with catalog.open(rec_id) as rec:
                summaries.append(_with_counts(rec))
        if args.json:
            print(json.dumps(summaries, indent=1))
        else:
            _print_catalog(path, summaries)
        return 0
    if not path.exists():
        raise ReaderError(f"{path}: no such file or folder")
    with Recording.open(path) as rec:
        summary = _with_counts(rec)
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        _print_recording(summary)
    return 0


def _with_counts(rec: Any) -> dict[str, Any]:
    """Summary plus per-signal figures that need a (chunked) pass over the data."""
    summary = rec.summary()
    for name, entry in summary["signals"].items():
        sig = rec[name]
        if entry["kind"] == "intervals":
            entry["n_intervals"] = len(sig)
        if entry["kind"] == "spikes":
            counts = sig.counts()
            entry["spikes_per_unit_median"] = float(_median(counts))
            entry["mean_rate_hz"] = float(counts.sum() / max(rec.duration, 1e-9) / len(counts))
        info = getattr(sig, "channel_info", None) or {}
        if entry["kind"] == "regular" and "type" in info:  # EEG and other MNE channels
            types = [str(t) for t in info["type"]]
            entry["channel_types"] = {t: types.count(t) for t in dict.fromkeys(types)}
            if "bad" in info:
                entry["bad_channels"] = [
                    str(c) for c, b in zip(sig.channels, info["bad"], strict=True) if bool(b)
                ]
        if entry["kind"] == "regular" and "label" in info:  # fMRI parcels
            entry["n_parcels"] = len(sig.channels)
            entry["tr_s"] = 1.0 / sig.rate
    return summary


def _median(values: Any) -> float:
    import numpy as np

    return float(np.median(values)) if len(values) else 0.0


def _print_catalog(path: Path, summaries: list[dict[str, Any]]) -> None:
    print(f"catalog {path}: {len(summaries)} recordings")
    header = (
        f"{'id':<32} {'subject':<8} {'session':<10} {'modality':<9} {'dur (s)':>9} {'units':>6} "
        f"{'spikes':>10}"
    )
    print(header)
    print("-" * len(header))
    for s in summaries:
        spikes = [e for e in s["signals"].values() if e["kind"] == "spikes"]
        n_units = sum(e["n_units"] for e in spikes)
        n_spikes = sum(e["n_spikes"] for e in spikes)
        meta = s["metadata"]
        print(
            f"{s['id']:<32} {meta['subject_id'] or '-':<8} {meta['session_id'] or '-':<10} "
            f"{meta.get('modality') or '-':<9} {s['duration_s']:>9.1f} {n_units:>6} {n_spikes:>10}"
        )


def _print_recording(s: dict[str, Any]) -> None:
    meta, prov = s["metadata"], s["provenance"]
    print(f"recording {s['id']}  ({s['duration_s']:.1f} s)")
    for key in ("subject_id", "session_id", "species", "sex", "age", "task", "modality"):
        if meta.get(key):
            print(f"  {key:<18} {meta[key]}")
    for name, e in s["signals"].items():
        if e["kind"] == "regular" and ("channel_types" in e or "n_parcels" in e):
            what = "parcels" if "n_parcels" in e else "channels"
            shown = ", ".join(e["channels"][:12]) + (" ..." if len(e["channels"]) > 12 else "")
            print(f"  {name + ' ' + what:<18} {shown}")
    print("  signals:")
    for name, e in s["signals"].items():
        if e["kind"] == "spikes":
            detail = (
                f"{e['n_units']} units, {e['n_spikes']} spikes, "
                f"mean rate {e['mean_rate_hz']:.1f} Hz"
            )
        elif e["kind"] == "regular":
            detail = f"{e['length']} samples x {len(e['channels'])} ch at {e['rate']:g} Hz"
            if "channel_types" in e:
                kinds = ", ".join(f"{n} {t}" for t, n in e["channel_types"].items())
                bad = e.get("bad_channels") or []
                detail += f" ({kinds}" + (f"; bad: {', '.join(bad)})" if bad else ")")
            if "n_parcels" in e:
                detail = (
                    f"{e['length']} volumes x {e['n_parcels']} parcels, TR {e['tr_s']:g} s "
                    f"({e['rate']:g} Hz), start {e['start']:g} s"
                )
        elif e["kind"] == "irregular":
            detail = f"{e['length']} samples x {len(e['channels'])} ch (irregular)"
        else:
            detail = f"{e['n_intervals']} intervals; columns {', '.join(e['columns'])}"
        print(f"    {name:<16} {e['kind']:<10} {detail}")
    print("  provenance:")
    for key in ("source_path", "sha256", "dandiset_id", "reader", "neurofm_version"):
        if prov.get(key):
            print(f"    {key:<16} {prov[key]}")
    extra = prov.get("extra") or {}
    if isinstance(extra.get("alignment"), dict):
        how = extra["alignment"]
        print(
            f"    {'alignment':<16} {how.get('method')}, BOLD offset {how.get('offset_s', 0):g} s"
        )
    for step in extra.get("preprocessing") or []:
        params = ", ".join(f"{k}={v}" for k, v in step.items() if k not in ("step", "mne"))
        print(f"    {'preprocessing':<16} {step.get('step')}: {params}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
