"""Synthetic reaching data for the evaluation and pipeline tests: a catalog ingested with the
demo's dataset card, and a dataset card reading generated NWB files from a local folder."""

from __future__ import annotations

import textwrap
from pathlib import Path


def reaching_catalog(root: Path, n_sessions: int, n_trials: int) -> Path:
    """``n_sessions`` reaching sessions of one subject, generated under ``root / "raw"`` and
    ingested into ``root / "cat"`` with train/valid/test domains (the demo's card)."""
    from neurofm.pipeline import ingest
    from neurofm.specs import load_card
    from neurofm.synthetic.reaching import generate_reaching_dataset

    generate_reaching_dataset(
        root / "raw", n_subjects=1, n_sessions=n_sessions, n_trials=n_trials, progress=False
    )
    card = load_card("datasets/synthetic_reaching.yaml")
    report = ingest(root / "raw", root / "cat", card=card, progress=False)
    assert report.ok, report.failed
    return root / "cat"


def local_reaching_card(raw: Path, path: Path) -> Path:
    """Write a dataset card at ``path`` whose source is the NWB folder ``raw`` (splits from
    the trials' split column); returns ``path``."""
    path.write_text(
        textwrap.dedent(
            f"""\
            name: local_reaching
            source: {{local: {raw}}}
            reader: nwb
            fields: {{target: hand_vel, trials: trials, split_column: split}}
            splits: {{by: column}}
            """
        )
    )
    return path
