"""The ``neurofm`` command.

Only argparse is imported at module level: every subcommand imports what it needs when it runs,
so ``neurofm --help`` answers in a fraction of a second (torch + pynwb + lightning alone cost
~8 s to import).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, NoReturn

from neurofm import __version__, display
from neurofm.errors import NeuroFMError

log = logging.getLogger("neurofm")


class _Parser(argparse.ArgumentParser):
    """argparse with whole option names only (``--subject`` never stands for ``--subjects``),
    unknown options reported before missing ones, and a "did you mean" for mistyped commands
    and options."""

    #: The parsers of the current command line, outermost first (the last one is the
    #: subcommand's, whose options a leftover argument is compared with).
    chain: ClassVar[list[_Parser]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self._argv: list[str] = []

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self._argv = list(sys.argv[1:] if args is None else args)
        _Parser.chain.append(self)
        return super().parse_known_args(args, namespace)

    def unknown_options(self) -> list[str]:
        """The ``--options`` of this parser's arguments that it does not have."""
        known = self._option_string_actions
        return [
            a.split("=")[0]
            for a in self._argv
            if a.startswith("--") and a != "--" and a.split("=")[0] not in known
        ]

    def error(self, message: str) -> NoReturn:
        import difflib
        import re

        unknown = self.unknown_options()
        if unknown and message.startswith("the following arguments are required"):
            message = f"unrecognized arguments: {' '.join(unknown)}"
        wrong = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if wrong:
            choices = re.findall(r"'([^']*)'", wrong.group(2))
            close = difflib.get_close_matches(wrong.group(1), choices, n=1)
            if close:
                message += f"; did you mean {close[0]!r}?"
        elif message.startswith("unrecognized arguments") and unknown:
            options = [o for o in self._option_string_actions if o.startswith("--")]
            close = difflib.get_close_matches(unknown[0], options, n=1)
            if close:
                message += f"; did you mean {close[0]}?"
        super().error(message)


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _learning_rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="neurofm",
        description="From neuroscience recordings (NWB, DANDI, EEG, fMRI) to foundation models.",
    )
    parser.add_argument("--version", action="version", version=f"neurofm {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    parser.add_argument(
        "--threads",
        type=_positive_int,
        metavar="N",
        help="compute with N threads (default: the cores nobody else is using, followed while "
        "training; the same as NEUROFM_NUM_THREADS=N)",
    )
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

    pull = sub.add_parser(
        "pull", help="download a dandiset's NWB assets or an OpenNeuro snapshot, verified"
    )
    pull.add_argument(
        "ref",
        help="dandi:<id>[@<version>] (e.g. dandi:000128@draft) or openneuro:<id>[@<tag>] "
        "(e.g. openneuro:ds002336@2.0.2)",
    )
    pull.add_argument("--to", required=True, type=Path, help="download folder")
    _dandi_options(pull)
    pull.add_argument("--openneuro-url", help=f"OpenNeuro server URL (default ${ENV_OPENNEURO})")
    _cluster_options(pull)

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
    _cluster_options(ing)
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
        "--confounds",
        metavar="fmriprep|TSV",
        help="confounds to regress out of the BOLD ('fmriprep': an fMRIPrep derivative's own)",
    )
    rules = ing.add_mutually_exclusive_group()
    rules.add_argument(
        "--card",
        type=Path,
        metavar="CARD.yaml",
        help="dataset card (datasets/*.yaml): its field mapping, repairs and train/valid/test "
        "splits, EEG preprocessing and BOLD cleaning",
    )
    rules.add_argument(
        "--splits",
        choices=["random", "column", "time"],
        help="train/valid/test domains without a card: trials at random (70/10/20 %%, seed 0), "
        "by the trials' 'split' column, or contiguous blocks of time",
    )
    ing.add_argument(
        "--id", dest="recording_id", metavar="ID", help="the recording's id (one file only)"
    )

    train = sub.add_parser("train", help="run the train (and evaluate) steps of a pipeline")
    train.add_argument("pipeline", type=Path, help="pipeline YAML file with a train step")
    train.add_argument("--workdir", type=Path, help="override the spec's output folder")
    _override_options(train)

    evaluate = sub.add_parser(
        "evaluate",
        help="score a POYO (stitched R^2) or SAMBA (per-parcel r, with the ridge baseline) "
        "checkpoint on a catalog",
    )
    evaluate.add_argument("checkpoint", type=Path, help="a .ckpt written by neurofm train")
    evaluate.add_argument("catalog", type=Path, help="catalog folder with split domains")
    evaluate.add_argument(
        "--split",
        choices=["train", "valid", "test"],
        help="split to score (default: the dataset card's splits.evaluate_on, else test)",
    )
    evaluate.add_argument("--target", help="behaviour signal (default: the one trained on)")
    evaluate.add_argument(
        "--plot",
        type=Path,
        help="predicted-vs-true plot (POYO: a .png, .pdf or .svg file; SAMBA: a folder)",
    )
    evaluate.add_argument("--json", action="store_true", help="print the R^2 as JSON")
    evaluate.add_argument(
        "--recordings",
        action="append",
        metavar="ID[,ID...]",
        help="only these recordings (repeatable; default: every one the model can score)",
    )
    evaluate.add_argument(
        "--subject", action="append", metavar="LABEL", help="only this subject's (repeatable)"
    )

    ft = sub.add_parser(
        "finetune",
        help="adapt a POYO checkpoint to a new session of a catalog; the checkpoint written "
        "holds that session only (adapt keeps the pretrained sessions too)",
    )
    ft.add_argument("checkpoint", type=Path, help="pretrained POYO checkpoint")
    ft.add_argument("catalog", type=Path, help="catalog with the new session (and its splits)")
    ft.add_argument("--mode", choices=["unit-id", "full", "gradual"], default="unit-id")
    ft.add_argument(
        "--trials", type=_positive_int, help="labelled trials to train on (default all)"
    )
    ft.add_argument("--recording", help="recording id (default: the catalog's only one)")
    ft.add_argument("--epochs", type=_positive_int, default=30, help="default 30")
    ft.add_argument(
        "--lr",
        type=_learning_rate,
        default=None,
        help="default per mode: unit-id 0.03, gradual 0.03, full 0.001",
    )
    ft.add_argument("--out", type=Path, required=True, help="output folder (checkpoint, logs)")
    _device_options(ft, "training", default=True)

    adapt = sub.add_parser(
        "adapt",
        help="adapt a pretrained POYO to a new recording in one call: read it, extend the "
        "vocabularies, train on its first trials, score the rest; writes adapted.ckpt, "
        "report.md/json and predictions.png",
    )
    adapt.add_argument("checkpoint", help="POYO checkpoint, or a pretrained model's name")
    adapt.add_argument("recording", help="the new session: an NWB file or a recording (.h5)")
    adapt.add_argument(
        "--trials", type=_positive_int, default=20, help="labelled trials (default 20)"
    )
    adapt.add_argument("--mode", choices=["unit-id", "full", "gradual"], default="unit-id")
    adapt.add_argument("--epochs", type=_positive_int, default=100, help="default 100")
    adapt.add_argument(
        "--lr",
        type=_learning_rate,
        default=None,
        help="default per mode: unit-id 0.03, gradual 0.03, full 0.001",
    )
    adapt.add_argument("--catalog", type=Path, help="look RECORDING up as an id of this catalog")
    adapt.add_argument("--out", type=Path, required=True, help="output folder")
    _device_options(adapt, "training", default=True)

    predict = sub.add_parser(
        "predict", help="decode a recording's behaviour with a POYO checkpoint (CSV or NWB)"
    )
    predict.add_argument("checkpoint", help="POYO checkpoint (e.g. adapted.ckpt) or a name")
    predict.add_argument("recording", help="an NWB file or a recording (.h5)")
    predict.add_argument("--catalog", type=Path, help="look RECORDING up as an id of this catalog")
    predict.add_argument(
        "--out",
        type=Path,
        required=True,
        help="preds.csv (time and one column per dimension) or preds.nwb (a copy of the NWB "
        "source with a processing module)",
    )

    run = sub.add_parser("run", help="run a pipeline spec (pipelines/*.yaml)")
    run.add_argument("pipeline", type=Path, help="pipeline YAML file")
    run.add_argument("--workdir", type=Path, help="override the spec's output folder")
    run.add_argument("--api-url", help=f"DANDI API URL (default ${ENV_API} or the archive)")
    run.add_argument(
        "--openneuro-url",
        help=f"OpenNeuro server URL for openneuro: cards (default ${ENV_OPENNEURO} or "
        "https://openneuro.org)",
    )
    _cluster_options(run)
    _override_options(run)

    serve = sub.add_parser(
        "serve",
        help="serve a folder as a dandiset over a local DANDI API (for --api-url), until Ctrl-C",
    )
    serve.add_argument(
        "folder",
        type=Path,
        nargs="?",
        help="the dandiset's folder (e.g. neurofm synth's); with --replica, where to write it "
        "(default: a temporary folder, removed when the server stops)",
    )
    serve.add_argument("--dandiset", default="000000", help="six-digit id (default 000000)")
    serve.add_argument(
        "--replica",
        metavar="CARD",
        help="serve the replica of a dataset card's dandiset (`neurofm datasets` lists them) "
        "under the card's id and versions, to run its pipeline offline",
    )
    serve.add_argument("--seed", type=int, default=0, help="the replica's seed (default 0)")
    serve.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    serve.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")

    datasets = sub.add_parser(
        "datasets",
        help="list the dataset cards (datasets/*.yaml): dandiset, version, target, size, "
        "replica test; `datasets show NAME` prints one",
    )
    datasets.add_argument(
        "--dir", type=Path, help="folder of cards (default ./datasets, else neurofm's own)"
    )
    datasets.add_argument("--json", action="store_true", help="print one JSON document")
    datasets_sub = datasets.add_subparsers(dest="datasets_command", metavar="COMMAND")
    show = datasets_sub.add_parser("show", help="print a dataset card")
    show.add_argument("name", help="the card's name (mc_maze) or a path to a card file")

    info = sub.add_parser(
        "info",
        help="summarise a recording (.h5) or a catalog folder (damaged recordings are marked; "
        "exit 1 if any), or print a checkpoint's model card (.ckpt)",
    )
    info.add_argument("path", type=Path)
    info.add_argument("--json", action="store_true", help="print one JSON document")

    verify = sub.add_parser(
        "verify",
        help="re-read a recording (.h5) or every recording of a catalog against the checksums "
        "stored when it was written; exit 1 if any is damaged",
    )
    verify.add_argument("path", type=Path)
    verify.add_argument("--json", action="store_true", help="print one JSON document")

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
ENV_OPENNEURO = "NEUROFM_OPENNEURO_URL"


def _override_options(parser: argparse.ArgumentParser) -> None:
    """Change a pipeline spec from the command line (validated like the file)."""
    parser.add_argument("--epochs", type=int, help="the train step's epochs")
    parser.add_argument("--batch-size", type=int, help="the train step's batch size")
    parser.add_argument("--lr", type=_learning_rate, help="the train step's learning rate")
    parser.add_argument(
        "--resume",
        action="store_true",
        default=None,
        help="continue the train step from its last.ckpt (e.g. after a crash), exactly where "
        "it stopped",
    )
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        metavar="N",
        help="also write last.ckpt every N training steps (default: at each epoch's end)",
    )
    _device_options(parser, "the train step's")
    parser.add_argument(
        "--num-nodes",
        type=int,
        metavar="N",
        help="machines to train on (with --devices per machine: DDP over devices x N "
        "processes, e.g. under SLURM's srun or torchrun; default 1)",
    )
    parser.add_argument(
        "--strategy",
        help="Lightning's strategy: auto (default; DDP when there are several processes), ddp, "
        "ddp_spawn, ddp_find_unused_parameters_true",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="change any field of the spec (steps.train.epochs=5, steps.evaluate.split=valid, "
        "workdir=out) or of its dataset card (card.splits.seed=1); values are YAML",
    )


def _overrides(args: argparse.Namespace) -> list[str]:
    """``--epochs 5`` and friends as ``steps.train.epochs=5``, then the KEY=VALUE ones."""
    out = [
        f"steps.train.{key}={value}"
        for key, value in (
            ("epochs", args.epochs),
            ("batch_size", args.batch_size),
            ("lr", args.lr),
            ("resume", args.resume),
            ("checkpoint_every_n_steps", args.checkpoint_every),
            ("accelerator", args.accelerator),
            ("devices", args.devices),
            ("num_nodes", args.num_nodes),
            ("strategy", args.strategy),
            ("precision", args.precision),
        )
        if value is not None
    ]
    return out + list(args.overrides)


def _device_options(parser: argparse.ArgumentParser, whose: str, default: bool = False) -> None:
    """``--accelerator``, ``--devices``, ``--precision``: what trains (Lightning's choices)."""
    parser.add_argument(
        "--accelerator",
        choices=["auto", "cpu", "gpu"],
        default="auto" if default else None,
        help=f"{whose} device: auto (a GPU when there is one; the default), cpu or gpu",
    )
    parser.add_argument(
        "--devices",
        type=int,
        default=1 if default else None,
        metavar="N",
        help="how many devices (default 1)",
    )
    parser.add_argument(
        "--precision",
        default="32-true" if default else None,
        help="Lightning's precision: 32-true (default), 16-mixed, bf16-mixed, 64-true...",
    )


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


def _cluster_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="one Dask task per asset on a local cluster of N worker processes",
    )
    where.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="one Dask task per asset on a running Dask cluster (e.g. tcp://10.0.0.5:8786)",
    )
    parser.set_defaults(client=None)


def _with_client(command: Any, args: argparse.Namespace) -> int:
    """Run ``command(args)`` with ``args.client`` a Dask client for --workers/--scheduler."""
    from neurofm.pipeline.cluster import dask_client

    with dask_client(args.workers, args.scheduler) as client:
        args.client = client
        return command(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``neurofm`` console script; returns the exit code."""
    parser = _parser()
    _Parser.chain.clear()
    args, extra = parser.parse_known_args(argv)
    # KEY=VALUE overrides may come after options (`train P --epochs 5 k=v`), which argparse
    # leaves over; anything else left over is a usage error, as parse_args would say (but
    # by the subcommand, which can tell what was meant).
    if extra and getattr(args, "overrides", None) is not None:
        if all("=" in e and not e.startswith("-") for e in extra):
            args.overrides += extra
            extra = []
    if extra:
        _Parser.chain[-1].error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # The dandi client logs each transfer and HTTP error itself (it reads this variable
        # when imported); our own report is one clear line per problem.
        os.environ.setdefault("DANDI_LOG_LEVEL", "CRITICAL")
    if args.threads:  # read by neurofm.threads wherever neurofm computes
        os.environ["NEUROFM_NUM_THREADS"] = str(args.threads)
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
            "adapt": _adapt,
            "predict": _predict,
            "info": _info,
            "datasets": _datasets,
            "verify": _verify,
            "analyze": _analyze,
            "serve": _serve,
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
        per_run = sorted({r.n_volumes for r in runs})
        if len(runs) == 1:
            each = f"{runs[0].n_volumes} volumes"
        elif len(per_run) == 1:
            each = f"{per_run[0]} volumes each"
        else:
            each = "volumes per run: " + ", ".join(str(r.n_volumes) for r in runs)
        print(
            f"wrote {_plural(len(runs), 'EEG-fMRI run')} ({each}, TR {args.tr:g} s) as BIDS to "
            f"{args.out}"
        )
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
    print(f"wrote {_plural(len(sessions), 'session')} ({total:,} spikes) to {args.out}")
    return 0


def _plural(n: int, noun: str) -> str:
    """``1 recording``, ``2 recordings``."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


# ---- ingest --------------------------------------------------------------------------------


def _pull(args: argparse.Namespace) -> int:
    from neurofm.sources.dandi import pull
    from neurofm.sources.openneuro import is_openneuro_ref

    if is_openneuro_ref(args.ref):
        if args.workers is not None or args.scheduler is not None:
            raise NeuroFMError("--workers and --scheduler apply to dandi: references only")
        return _pull_openneuro(args)
    if args.openneuro_url:
        raise NeuroFMError("--openneuro-url applies to openneuro: references only")
    if (args.workers is not None or args.scheduler is not None) and args.client is None:
        return _with_client(_pull, args)

    if args.stream:
        # Nothing is downloaded whole: the assets are read over HTTP (only the bytes the NWB
        # reader needs) straight into recordings, so --to becomes a catalog.
        from neurofm.pipeline import ingest_dandi

        _, ingested = ingest_dandi(
            args.ref,
            args.to,
            include=args.include,
            stream=True,
            api_url=args.api_url,
            client=args.client,
        )
        _print_ingest(ingested, args.to)
        return 0 if ingested.ok else 1
    if args.client is not None:
        from neurofm.pipeline.cluster import pull_on_client

        report = pull_on_client(
            args.client, args.ref, args.to, include=args.include, api_url=args.api_url
        )
    else:
        report = pull(args.ref, args.to, include=args.include, api_url=args.api_url)
    for _, reason in report.failed:
        print(f"neurofm: error: {reason}", file=sys.stderr)
    print(
        f"dandi:{report.dandiset}@{report.version}: {len(report.downloaded)} downloaded, "
        f"{len(report.skipped)} already present and verified, {len(report.failed)} failed "
        f"({report.bytes_transferred:,} bytes transferred) -> {args.to}"
    )
    return 0 if report.ok else 1


def _pull_openneuro(args: argparse.Namespace) -> int:
    from neurofm.sources import openneuro

    if args.stream or args.api_url:
        raise NeuroFMError("--stream and --api-url apply to dandi: references only")
    report = openneuro.pull(args.ref, args.to, include=args.include, url=args.openneuro_url)
    for _, reason in report.failed:
        print(f"neurofm: error: {reason}", file=sys.stderr)
    print(
        f"{report.label}: {len(report.downloaded)} downloaded, {len(report.skipped)} already "
        f"present and verified, {len(report.failed)} failed ({report.bytes_transferred:,} bytes "
        f"transferred) -> {args.to}"
    )
    return 0 if report.ok else 1


def _ingest(args: argparse.Namespace) -> int:
    from neurofm.pipeline import ingest, ingest_dandi
    from neurofm.sources.dandi import is_dandi_ref

    if (args.workers is not None or args.scheduler is not None) and args.client is None:
        return _with_client(_ingest, args)
    card = None
    if args.card is not None:
        from neurofm.specs import load_card

        card = load_card(args.card)
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
        if args.splits or args.recording_id:
            raise NeuroFMError(
                "--splits and --id apply to local sources; for a dandiset give a dataset card "
                "(--card), whose splits: say how to split"
            )
        _, report = ingest_dandi(
            args.src,
            args.out,
            to=args.to,
            include=args.include,
            stream=args.stream,
            api_url=args.api_url,
            force=args.force,
            card=card,
            client=args.client,
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
            card=card,
            splits=args.splits,
            recording_id=args.recording_id,
            client=args.client,
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

    result = run_pipeline(
        args.pipeline,
        workdir=args.workdir,
        only=("train", "evaluate"),
        overrides=_overrides(args),
    )
    print(f"pipeline {result.name} -> {result.workdir}")
    for line in result.summary:
        print(f"  {line}")
    return 0 if result.ok else 1


def _evaluate(args: argparse.Namespace) -> int:
    from neurofm.evaluation.checkpoint import poyo_sessions, select_recordings
    from neurofm.evaluation.poyo import evaluate_poyo
    from neurofm.evaluation.reports import results_table
    from neurofm.training.poyo import load_poyo
    from neurofm.training.samba import is_samba_checkpoint

    named = [r.strip() for item in args.recordings or [] for r in item.split(",") if r.strip()]
    samba = is_samba_checkpoint(args.checkpoint)
    if args.plot is not None and not samba:  # a bad name said before the evaluation runs
        from neurofm.viz.figures import figure_format

        figure_format(args.plot)
    if args.split is None:  # what the catalog's dataset card says to evaluate on
        args.split = _default_split(args.catalog)
    wanted = select_recordings(args.catalog, named, args.subject)
    if samba:
        return _evaluate_samba(args, wanted)

    model, scaler, cfg = load_poyo(args.checkpoint)
    # By default every session the model knows; one asked for by name must be scorable.
    sessions, skipped = poyo_sessions(model, args.catalog, args.split, wanted, required=named)
    target = args.target or cfg.target
    result = evaluate_poyo(model, scaler, args.catalog, target, args.split, recordings=sessions)
    if args.plot:
        from neurofm.viz.decoding import plot_predictions

        plot_predictions(result, args.plot)
    if args.json:
        doc = {"split": args.split, "r2": result.r2, "mean_r2": result.mean_r2, "skipped": skipped}
        doc.update(
            metric=result.metric,
            scores=result.scores,
            mean_score=result.mean_score,
            masked=result.n_masked,
        )
        print(json.dumps(doc))
    else:
        of = f" of {result.target}" if not isinstance(target, str) else ""
        print(f"stitched {result.metric_name}{of} on the {args.split} split of {args.catalog}")
        print(results_table({"POYO": result.scores}))
        if result.n_masked:
            print(f"masked: {result.n_masked} evaluation points with a non-finite target")
        for rid, why in skipped.items():
            print(f"skipped {rid}: {why}")
        if args.plot:
            print(f"plot: {args.plot}")
    return 0


def _default_split(catalog: Path) -> str:
    """The split the catalog's dataset card evaluates on (``splits.evaluate_on``), else test."""
    from neurofm.data import Catalog
    from neurofm.data.targets import evaluation_split

    cat = Catalog(catalog)
    recordings = [cat.open(rid) for rid in cat.ids]
    try:
        return evaluation_split(recordings)
    finally:
        for rec in recordings:
            rec.close()


def _evaluate_samba(args: argparse.Namespace, recordings: list[str] | None) -> int:
    from neurofm.evaluation.checkpoint import evaluate_samba_checkpoint
    from neurofm.specs import EvaluateStep

    options = EvaluateStep(split=args.split, baselines=None, plot=args.plot is not None)
    work = args.plot if args.plot is not None else args.checkpoint.parent
    report, lines = evaluate_samba_checkpoint(
        args.checkpoint, args.catalog, options, work, recordings
    )
    if args.json:
        print(json.dumps(report.metrics))
    else:
        print("\n".join(lines))
    return 0


def _finetune(args: argparse.Namespace) -> int:
    from neurofm.evaluation.fewshot import session_r2
    from neurofm.pretrained.registry import resolve
    from neurofm.training.finetune import finetune

    result = finetune(
        resolve(str(args.checkpoint)),  # a file, or a registered name (poyo-tiny-synthetic)
        args.catalog,
        args.out,
        recording_id=args.recording,
        mode=args.mode,
        trials=args.trials,
        epochs=args.epochs,
        lr=args.lr,
        score=session_r2,
        accelerator=args.accelerator,
        devices=args.devices,
        precision=args.precision,
    )
    print(f"fine-tuned ({result.mode}) on {result.recording_id} with {result.n_trials} trials")
    print(f"  trains: {', '.join(result.trainable)}")
    print(f"  test R^2 (stitched): {result.mean_r2:.3f}")
    print(f"  checkpoint: {result.checkpoint}")
    return 0


def _adapt(args: argparse.Namespace) -> int:
    from neurofm.pretrained.report import write_adaptation_report
    from neurofm.pretrained.session import load_pretrained

    model = load_pretrained(args.checkpoint)
    adapted = model.adapt(
        args.recording,
        trials=args.trials,
        mode=args.mode,
        epochs=args.epochs,
        lr=args.lr,
        out=args.out,
        catalog=args.catalog,
        progress=True,
        accelerator=args.accelerator,
        devices=args.devices,
        precision=args.precision,
    )
    files = write_adaptation_report(adapted, args.out)
    a, score = adapted.card.adaptation or {}, adapted.card.scores["adaptation"]
    print(
        f"adapted ({a.get('mode')}) to {a.get('recording')} on {a.get('trials')} trials: "
        f"{a.get('new_units')} new units, {a.get('kept_units')} already known"
    )
    print(f"  held-out R^2 (stitched, {score['n']} trials): {score['r2']:.3f}")
    for path in [adapted.path, *files]:
        print(f"  wrote {path}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from neurofm.pretrained.report import check_predictions_path, write_predictions
    from neurofm.pretrained.session import load_pretrained

    check_predictions_path(args.out, Path(args.recording))  # before the decoding, not after
    model = load_pretrained(args.checkpoint)
    series = model.predict(args.recording, catalog=args.catalog)
    path = write_predictions(series, args.out, source=Path(args.recording))
    print(f"predicted {series.name} ({len(series)} samples x {len(series.channels)}) -> {path}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from neurofm.pipeline import run_pipeline

    result = run_pipeline(
        args.pipeline,
        api_url=args.api_url,
        workdir=args.workdir,
        overrides=_overrides(args),
        openneuro_url=args.openneuro_url,
        workers=args.workers,
        scheduler=args.scheduler,
    )
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


# ---- serve ---------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    import re

    from neurofm.errors import ReaderError
    from neurofm.testing.dandi_server import serve_dandiset

    if args.replica is not None:
        return _serve_replica(args)
    if args.folder is None:
        raise NeuroFMError("serve: give the dandiset's folder, or --replica CARD")
    if not args.folder.is_dir():
        raise ReaderError(f"{args.folder}: no such folder (the dandiset to serve)")
    if not re.fullmatch(r"\d{6}", args.dandiset):
        raise NeuroFMError(f"--dandiset: expected a six-digit id, e.g. 000000 ({args.dandiset!r})")
    with _port_errors(args):
        server = serve_dandiset(args.folder, args.dandiset, host=args.host, port=args.port)
    print(f"serving {args.folder} as dandi:{args.dandiset} (draft)", flush=True)
    print(f"API URL: {server.api_url}", flush=True)
    print(
        f"  neurofm run PIPELINE.yaml --api-url {server.api_url}   (or export "
        f"{ENV_API}={server.api_url}); Ctrl-C stops",
        flush=True,
    )
    return _serve_until_stopped(server)


@contextlib.contextmanager
def _port_errors(args: argparse.Namespace) -> Iterator[None]:
    """A server that cannot bind its address: one line saying what to do."""
    try:
        yield
    except OSError as exc:
        raise NeuroFMError(
            f"cannot serve on {args.host}:{args.port} ({exc.strerror or exc}); pick another "
            "--port, or leave it out for a free one"
        ) from None


def _serve_until_stopped(server: Any) -> int:
    """Block until Ctrl-C or ``kill`` (SIGTERM stops it like Ctrl-C: cleanly, exit 0)."""
    import signal
    import threading

    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        print("stopped", flush=True)
    finally:
        server.stop()
        signal.signal(signal.SIGTERM, previous)
    return 0


def _serve_replica(args: argparse.Namespace) -> int:
    """``neurofm serve --replica CARD``: write the replica of the card's dandiset (or
    OpenNeuro dataset) and serve it where the card's pipeline pulls from."""
    import shutil
    import tempfile

    from neurofm.testing.replicas import NWB_REPLICAS, REPLICAS, build_replica

    if args.replica not in REPLICAS:
        raise NeuroFMError(
            f"--replica: no replica of {args.replica!r} (replicas: {', '.join(sorted(REPLICAS))})"
        )
    temporary = args.folder is None
    root = Path(tempfile.mkdtemp(prefix=f"neurofm-{args.replica}-")) if temporary else args.folder
    try:
        print(f"writing the replica of {args.replica} into {root / args.replica}", flush=True)
        truth = build_replica(args.replica, root / args.replica, seed=args.seed)
        pipeline = Path(__file__).resolve().parents[1] / "pipelines" / f"{args.replica}.yaml"
        run = f"neurofm run {pipeline if pipeline.is_file() else 'PIPELINE.yaml'}"
        if args.replica in NWB_REPLICAS:
            from neurofm.testing.replicas import serve_replicas

            with _port_errors(args):
                server = serve_replicas([truth], host=args.host, port=args.port).start()
            url, option = server.api_url, "--api-url"
            versions = ", ".join(truth.published_versions) or "draft"
            what = f"dandi:{truth.dandiset_id} (versions {versions})"
        else:  # an OpenNeuro dataset: its pipeline pulls with --openneuro-url
            from neurofm.specs import load_card
            from neurofm.testing.openneuro_server import (
                LocalOpenNeuroServer,
                OpenNeuroDatasetSpec,
            )

            source = load_card(pipeline.parents[1] / "datasets" / f"{args.replica}.yaml").source
            tags = (source.version,) if source.version else ("1.0.0",)  # the card's pin
            spec = OpenNeuroDatasetSpec(truth.folder, tags=tags)
            with _port_errors(args):
                server = LocalOpenNeuroServer(
                    {source.openneuro: spec}, host=args.host, port=args.port
                ).start()
            url, option = server.url, "--openneuro-url"
            what = f"OpenNeuro {source.openneuro} (snapshot {tags[-1]})"
        print(f"serving the replica of {args.replica} ({truth.folder}) as {what}", flush=True)
        print(f"  {run} {option} {url} --workdir {args.replica}-run   Ctrl-C stops", flush=True)
        return _serve_until_stopped(server)
    finally:
        if temporary:
            shutil.rmtree(root, ignore_errors=True)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


# ---- datasets ------------------------------------------------------------------------------


def _cards_folder(given: Path | None) -> Path:
    """``--dir``, else ``./datasets`` when it holds cards, else the one beside the package."""
    import neurofm

    if given is not None:
        if not given.is_dir():
            raise NeuroFMError(f"{given}: no such folder of dataset cards")
        return given
    here = Path("datasets")
    if here.is_dir() and any(here.glob("*.yaml")):
        return here
    return Path(neurofm.__file__).resolve().parents[1] / "datasets"


def _replica_cards() -> set[str]:
    """Card names that the end-to-end replicas (neurofm/testing/replicas) cover, found by
    reading the files: the library does not import its test infrastructure."""
    import re

    import neurofm

    folder = Path(neurofm.__file__).resolve().parent / "testing" / "replicas"
    names: set[str] = set()
    for path in sorted(folder.glob("*.py")) if folder.is_dir() else []:
        names.add(path.stem)
        names.update(re.findall(r"""["']([a-z][a-z0-9_]*)["']\s*:""", path.read_text()))
    return names


def _card_row(path: Path, replicas: set[str]) -> dict[str, Any]:
    from neurofm.errors import SpecError
    from neurofm.specs import load_card

    try:
        card = load_card(path)
    except SpecError as exc:
        return {"name": path.stem, "file": str(path), "error": " ".join(str(exc).split())}
    src = card.source
    if src.dandi is not None:
        source, version = f"dandi:{src.dandi}", src.version or "latest"
    elif src.synthetic is not None:
        source, version = f"synthetic:{src.synthetic.kind}", "-"
    else:
        other = getattr(src, "openneuro", None)  # an OpenNeuro dataset, where cards have it
        source = f"openneuro:{other}" if other else f"local:{src.local}"
        version = src.version or "-"
    return {
        "name": card.name,
        "file": str(path),
        "source": source,
        "version": version,
        "target": card.fields.target_label or "-",
        "size": src.size or "",
        "replica": card.name in replicas,
        "evaluate_on": card.splits.evaluate_on,
        "repairs": sorted(k for k, v in card.repairs.model_dump().items() if v is not None),
    }


def _datasets(args: argparse.Namespace) -> int:
    folder = _cards_folder(args.dir)
    if args.datasets_command == "show":
        return _show_card(folder, args.name)
    paths = sorted(folder.glob("*.yaml"))
    if not paths:
        raise NeuroFMError(f"{folder}: no dataset cards (*.yaml)")
    replicas = _replica_cards()
    rows = [_card_row(p, replicas) for p in paths]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0 if not any("error" in r for r in rows) else 1
    cells = [
        [r["name"], r["source"], r["version"], r["target"], r["size"] or "?"]
        + ["yes" if r["replica"] else "-", ", ".join(r["repairs"]) or "-"]
        for r in rows
        if "error" not in r
    ]
    head = ["card", "source", "version", "target", "size", "replica", "repairs"]
    widths = [max(len(c[i]) for c in [head, *cells]) for i in range(len(head))]
    print(f"dataset cards in {folder}")
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip())
    print("-" * (sum(widths) + 2 * (len(widths) - 1)))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())
    for r in rows:
        if "error" in r:
            print(f"{r['name']}: invalid card: {r['error']}")
    print(
        "size: as the card states it (? = not stated); replica: an end-to-end test runs the "
        "card on a replica of its dataset, which `neurofm serve --replica NAME` serves"
    )
    return 0 if not any("error" in r for r in rows) else 1


def _show_card(folder: Path, name: str) -> int:
    from neurofm.specs import load_card

    path = Path(name)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        path = folder / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
        raise NeuroFMError(f"no dataset card {name!r} in {folder} (cards: {known})")
    load_card(path)  # a broken card is an error naming the key, not a silent print
    print(f"# {path}")
    print(path.read_text(encoding="utf-8").rstrip())
    return 0


# ---- info ----------------------------------------------------------------------------------


def _info(args: argparse.Namespace) -> int:
    from neurofm.data import Catalog, Recording
    from neurofm.errors import ReaderError

    path: Path = args.path
    if not path.exists() and len(path.parts) == 1:  # a shipped model's name: its card
        from neurofm.pretrained.registry import REGISTRY, resolve

        if str(path) in REGISTRY:
            path = resolve(str(path))
    if _is_checkpoint(path):
        return _checkpoint_info(path, args.json)
    if path.is_dir():
        catalog = Catalog(path)
        summaries = _catalog_summaries(catalog)
        for leftover in catalog.leftovers():
            print(f"neurofm: warning: {path}: leftover {leftover.describe()}", file=sys.stderr)
        if args.json:
            print(json.dumps(summaries, indent=1))
        else:
            _print_catalog(path, summaries)
        return 1 if any(s["status"] != "ok" for s in summaries) else 0
    if not path.exists():
        from neurofm.pretrained.registry import REGISTRY

        names = f" (nor a pretrained model: {', '.join(sorted(REGISTRY))})"
        raise ReaderError(
            f"{path}: no such file or folder{names if len(path.parts) == 1 and REGISTRY else ''}"
        )
    _not_raw(path)
    _raise_if_damaged(path)  # also "not a neurofm recording", in Recording.open's words
    with Recording.open(path) as rec:
        summary = _with_counts(rec)
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        _print_recording(summary)
    return 0


def _is_checkpoint(path: Path) -> bool:
    """A PyTorch checkpoint (a zip archive, or named .ckpt/.pt/.pth), not a recording."""
    import zipfile

    return path.is_file() and (path.suffix in (".ckpt", ".pt", ".pth") or zipfile.is_zipfile(path))


def _checkpoint_info(path: Path, as_json: bool) -> int:
    from neurofm.pretrained.card import checkpoint_summary

    summary, lines = checkpoint_summary(path)
    print(json.dumps(summary, indent=1) if as_json else "\n".join(lines))
    return 0


def _raise_if_damaged(path: Path) -> None:
    from neurofm.data.recording import check_integrity
    from neurofm.errors import ReaderError

    problems = check_integrity(path).problems
    if problems:
        first = problems[0] if problems[0].startswith(str(path)) else f"{path}: {problems[0]}"
        more = f" (and {len(problems) - 1} more; see neurofm verify)" if len(problems) > 1 else ""
        raise ReaderError(first + more)


def _catalog_summaries(catalog: Any) -> list[dict[str, Any]]:
    """One summary per indexed recording; a damaged one is marked, never fatal to the rest."""
    summaries = []
    health = catalog.verify()  # checksums, after a crash-safe walk of every file
    for rec_id in catalog.ids:
        problems = health.recordings[rec_id].problems
        if not problems:
            try:
                with catalog.open(rec_id) as rec:
                    summaries.append({**_with_counts(rec), "status": "ok"})
                continue
            except Exception as exc:  # unchecked (old) files with damaged values
                problems = [f"{type(exc).__name__}: {' '.join(str(exc).split())}"]
        summaries.append({"id": rec_id, "status": "broken", "problems": problems})
    for problem in catalog.problems:
        summaries.append({"id": None, "status": "broken", "problems": [problem]})
    return summaries


def _verify(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from neurofm.data import Catalog
    from neurofm.data.recording import check_integrity
    from neurofm.errors import ReaderError

    path: Path = args.path
    if path.is_dir():
        catalog = Catalog(path)
        with tqdm(total=len(catalog), desc="verify", unit="rec", disable=None) as bar:
            health = catalog.verify(progress=lambda _: bar.update())
        results, problems = health.recordings, health.problems
        leftovers = [lo.describe() for lo in health.leftovers]
        unindexed = [str(p) for p in health.unindexed]
    elif path.exists():
        results, problems, leftovers = {path.stem: check_integrity(path)}, [], []
        unindexed = []
    else:
        raise ReaderError(f"{path}: no such file or folder")
    broken = {rid: r.problems for rid, r in results.items() if not r.ok}
    unchecked = [rid for rid, r in results.items() if r.ok and not r.checked]
    if args.json:
        doc = {
            "path": str(path),
            "ok": not broken and not problems,
            "recordings": {
                rid: {
                    "status": "broken" if not r.ok else "ok" if r.checked else "unchecked",
                    "problems": r.problems,
                }
                for rid, r in results.items()
            },
            "index_problems": problems,
            "leftovers": leftovers,
            "unindexed": unindexed,
        }
        print(json.dumps(doc, indent=1))
    else:
        for rid, r in results.items():
            if not r.ok:
                for problem in r.problems:
                    print(f"BROKEN  {rid}: {problem}")
            elif not r.checked:
                print(f"UNCHECKED  {rid}: no checksums (written by an older neurofm)")
            else:
                print(f"ok      {rid}")
        for problem in problems:
            print(f"BROKEN  {problem}")
        for leftover in leftovers:
            print(f"leftover  {leftover}")
        for file in unindexed:
            print(
                f"not indexed  {file}: no entry of this catalog names it, so it is neither "
                "read nor checked (ingest its source here, or move it out)"
            )
        n = len(results)
        healthy = n - len(broken) - len(unchecked)
        tail = f", {len(unchecked)} unchecked" if unchecked else ""
        print(
            f"{n} recording{'' if n == 1 else 's'}, {healthy} healthy, {len(broken)} broken"
            f"{tail} -> {path}"
        )
    return 1 if broken or problems else 0


def _not_raw(path: Path) -> None:
    """A raw file (NWB, EEG, NIfTI) is not a recording yet: say how to make it one."""
    from neurofm.readers import format_of

    kind = format_of(path)
    if kind == "nwb" and not path.name.lower().endswith(".nwb"):
        return
    what = {"nwb": "an NWB file", "eeg": "an EEG file", "fmri": "a NIfTI file"}[kind]
    raise NeuroFMError(
        f"{path}: not a neurofm recording ({what}); ingest it first: neurofm ingest {path} "
        "--out catalog, then neurofm info catalog"
    )


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
    indexed = [s for s in summaries if s["id"] is not None]
    n_broken = sum(s["status"] != "ok" for s in indexed)
    marked = f" ({n_broken} broken)" if n_broken else ""
    print(f"catalog {path}: {_plural(len(indexed), 'recording')}{marked}")
    width = max([32, *(len(s["id"]) for s in indexed)])  # ids of BIDS runs are long
    header = (
        f"{'id':<{width}} {'subject':<8} {'session':<10} {'modality':<9} {'dur (s)':>9} "
        f"{'units':>6} {'spikes':>10}"
    )
    print(header)
    print("-" * len(header))
    for s in summaries:
        if s["status"] != "ok":  # damaged, missing, or an unusable index entry
            print(f"{s['id'] or '':<{width}} BROKEN  " if s["id"] else "BROKEN  ", end="")
            print("; ".join(s["problems"]))
            continue
        spikes = [e for e in s["signals"].values() if e["kind"] == "spikes"]
        # EEG, fMRI...: no spikes at all, which is "-", not "0 units"
        n_units = str(sum(e["n_units"] for e in spikes)) if spikes else "-"
        n_spikes = str(sum(e["n_spikes"] for e in spikes)) if spikes else "-"
        meta = s["metadata"]
        print(
            f"{s['id']:<{width}} {meta['subject_id'] or '-':<8} {meta['session_id'] or '-':<10} "
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
            detail = display.count(e["n_intervals"], "interval")
            if e["columns"]:
                detail += f"; columns {', '.join(e['columns'])}"
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
    for line in _repair_lines(extra.get("repairs")):
        print(f"    {'repairs':<16} {line}")


def _repair_lines(repairs: Any) -> list[str]:
    """What a dataset card's repairs did to a recording, one line per policy."""
    if not isinstance(repairs, dict):
        return []

    def listed(items: list[Any]) -> str:
        shown = ", ".join(map(str, items[:12])) + (" ..." if len(items) > 12 else "")
        return f" ({shown})" if items else ""

    lines = []
    spikes = repairs.get("unsorted_spikes")
    if isinstance(spikes, dict):
        done = "dropped" if spikes.get("policy") == "drop_units" else "sorted"
        lines.append(
            f"unsorted_spikes {spikes.get('policy')}: {spikes.get('n_units', 0)} unit(s) "
            f"{done}{listed(spikes.get('units') or [])}, {spikes.get('n_spikes', 0)} spikes"
        )
    clip = repairs.get("trial_overlap")
    if isinstance(clip, dict):
        lines.append(
            f"trial_overlap (tolerance {clip.get('tolerance_s')} s): "
            f"{clip.get('n_trials', 0)} trial end(s) clipped{listed(clip.get('trials') or [])}"
            + (f", largest overlap {clip['max_clipped_s']:.3g} s" if clip.get("n_trials") else "")
        )
    dropped = repairs.get("overlapping_trials")
    if isinstance(dropped, dict):
        lines.append(
            f"overlapping_trials {dropped.get('policy')}: {dropped.get('n_trials', 0)} "
            f"trial(s) dropped{listed(dropped.get('trials') or [])}"
        )
    return lines


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
