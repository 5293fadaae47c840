"""``neurofm run`` in a log file: a header per step, whole progress lines, no redraws."""

from __future__ import annotations

import re
import textwrap

from reaching_factory import local_reaching_card

from neurofm.pipeline import run_pipeline
from neurofm.synthetic.reaching import generate_reaching_dataset


def test_each_step_has_a_header_and_ingest_writes_lines(tmp_path, capsys):
    raw = tmp_path / "raw"
    generate_reaching_dataset(raw, n_subjects=1, n_sessions=2, n_trials=8, progress=False)
    card = local_reaching_card(raw, tmp_path / "card.yaml")
    spec = tmp_path / "pipe.yaml"
    spec.write_text(
        textwrap.dedent(
            f"""\
            name: headers
            dataset: {card}
            steps:
              - pull: {{}}
              - ingest: {{out: catalog}}
            """
        )
    )
    capsys.readouterr()
    result = run_pipeline(spec, workdir=tmp_path / "work")  # progress on, stderr not a TTY
    assert result.ok
    captured = capsys.readouterr()
    err = captured.err
    assert "\r" not in err and "\r" not in captured.out
    lines = err.splitlines()
    headers = [line for line in lines if line.startswith("[")]
    assert headers[0] == "[1/2] pull"
    assert re.fullmatch(r"\[2/2\] ingest \(after \d+\.\d s\)", headers[1]), headers
    # one line per file ingested, after the header
    ingest = [line for line in lines if line.startswith("ingest: ")]
    assert [line.split(",")[0] for line in ingest] == [
        "ingest: 1/2 file (50%)",
        "ingest: 2/2 file (100%)",
    ]
    assert lines.index(headers[1]) < lines.index(ingest[0])
