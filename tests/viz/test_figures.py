"""The helpers every plot shares: the backend rule, atomic PNGs, a cheap ``import neurofm.viz``."""

from __future__ import annotations

import os
import subprocess
import sys

import matplotlib.figure
import matplotlib.pyplot as plt
import pytest

import neurofm.viz
from neurofm.errors import NeuroFMError
from neurofm.viz.figures import pyplot, save_png

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _python(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return out.stdout.strip()


@pytest.fixture
def figure():
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    yield fig
    plt.close(fig)


def test_save_png_is_atomic_and_creates_folders(tmp_path, figure):
    path = tmp_path / "a" / "b" / "fig.png"
    assert save_png(figure, path, dpi=50) == path
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in path.parent.iterdir()] == ["fig.png"]  # no temp file left
    assert save_png(figure, None) is None


def test_the_suffix_names_the_format(tmp_path, figure):
    magic = {"fig.pdf": b"%PDF", "fig.svg": b"<?xml", "fig": PNG_MAGIC, "fig.JPG": b"\xff\xd8"}
    for name, head in magic.items():
        assert save_png(figure, tmp_path / name, dpi=30).read_bytes().startswith(head), name
    with pytest.raises(NeuroFMError, match=r"out.txt: .txt is not an image format; give the "
                       r"plot a name ending in .png, .pdf, .svg"):  # fmt: skip
        save_png(figure, tmp_path / "out.txt")
    assert not (tmp_path / "out.txt").exists()


def test_a_failed_save_leaves_neither_file_nor_temp(tmp_path, figure, monkeypatch):
    path = tmp_path / "fig.png"
    path.write_bytes(b"old")

    def half_written(fname, **kwargs):
        with open(fname, "wb") as fh:
            fh.write(PNG_MAGIC)  # a partial image...
        raise RuntimeError("disk full")  # ...then the writer dies

    monkeypatch.setattr(figure, "savefig", half_written)
    with pytest.raises(RuntimeError, match="disk full"):
        save_png(figure, path)
    assert path.read_bytes() == b"old"  # the previous file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["fig.png"]


def test_pyplot_returns_pyplot():
    assert pyplot() is plt


def test_backend_agg_unless_one_is_chosen():
    code = "from neurofm.viz.figures import pyplot; pyplot(); import matplotlib; "
    code += "print(matplotlib.get_backend().lower())"
    assert _python(code) == "agg"
    # MPLBACKEND (Jupyter sets it) is left alone
    assert _python(code, MPLBACKEND="svg") == "svg"
    # so is the backend of a user who imported pyplot first
    chosen = "import matplotlib; matplotlib.use('pdf'); import matplotlib.pyplot; " + code
    assert _python(chosen) == "pdf"


def test_import_is_cheap_and_names_resolve_lazily():
    code = (
        "import sys, neurofm.viz as v; "
        "heavy = [m for m in ('matplotlib', 'nilearn', 'neurofm.data', 'torch') "
        "if m in sys.modules]; "
        "print(heavy, callable(v.plot_psth), 'matplotlib' in sys.modules)"
    )
    # plot_psth is found without drawing anything (matplotlib loads only when a plot runs)
    assert _python(code) == "[] True False"


def test_public_names():
    for name in neurofm.viz.__all__:
        func = getattr(neurofm.viz, name)
        assert callable(func) and func.__module__.startswith("neurofm.viz.")
        assert name in dir(neurofm.viz)
    assert set(neurofm.viz.__all__) >= {
        "plot_trial",
        "plot_raster",
        "plot_psth",
        "plot_predictions",
        "plot_bold_predictions",
        "plot_parcel_map",
    }
    with pytest.raises(AttributeError, match="plot_nothing"):
        neurofm.viz.plot_nothing  # noqa: B018
    from neurofm.viz import analysis

    assert isinstance(analysis.plot_width_sweep([_row()]), matplotlib.figure.Figure)
    plt.close("all")


def _row() -> dict:
    return {"mode": "bias", "width": 8, "accuracy": 0.5, "chance": 0.1}
