"""What `import neurofm` offers a user: lazy top-level names, one `read` for every format,
documented configs, named results, catalog queries as DataFrames, clear conversion errors."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

import numpy as np
import pytest

import neurofm
from neurofm.errors import InvalidDataError

HEAVY = ("torch", "pynwb", "h5py", "lightning", "mne", "pandas", "numpy")


def test_top_level_names_are_the_real_ones():
    from neurofm.data.catalog import Catalog
    from neurofm.data.recording import Recording
    from neurofm.readers import read

    assert neurofm.Catalog is Catalog and neurofm.Recording is Recording and neurofm.read is read
    assert {"read", "Catalog", "Recording"} <= set(dir(neurofm)) & set(neurofm.__all__)
    with pytest.raises(AttributeError, match="module 'neurofm' has no attribute 'nope'"):
        neurofm.nope  # noqa: B018


def test_import_neurofm_loads_nothing_heavy_until_a_name_is_used():
    script = (
        "import sys\n"
        "import neurofm\n"
        f"heavy = {HEAVY!r}\n"
        "before = sorted({m.split('.')[0] for m in sys.modules} & set(heavy))\n"
        "neurofm.Catalog\n"
        "after = sorted({m.split('.')[0] for m in sys.modules} & set(heavy))\n"
        "print(','.join(before) + '|' + ','.join(after))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    before, after = proc.stdout.strip().split("|")
    assert before == ""
    assert "h5py" in after and "numpy" in after  # the data layer, loaded when first used


@pytest.fixture(scope="module")
def reaching(tmp_path_factory):
    from neurofm.synthetic import generate_reaching_dataset

    root = tmp_path_factory.mktemp("api")
    generate_reaching_dataset(
        root, n_subjects=2, n_sessions=1, n_trials=4, n_units_range=(10, 12), progress=False
    )
    return sorted(root.rglob("*.nwb"))


def test_read_picks_the_reader_by_file_type(reaching, tmp_path, monkeypatch):
    import neurofm.readers as readers
    from neurofm.readers.nwb import read_nwb

    rec, ref = neurofm.read(reaching[0]), read_nwb(reaching[0])
    assert rec.id == ref.id and set(rec.signals) == set(ref.signals)
    np.testing.assert_array_equal(rec["spikes"].timestamps, ref["spikes"].timestamps)
    # EEG and NIfTI names go to their readers, with the options given
    seen = []
    for kind in ("eeg", "fmri"):
        monkeypatch.setitem(readers.READERS, kind, lambda p, **kw: seen.append((p, kw)))
    neurofm.read(tmp_path / "x.vhdr", preprocessing={"l_freq": 1.0})
    neurofm.read(tmp_path / "x_bold.nii.gz", atlas="a.nii.gz")
    assert seen == [
        (tmp_path / "x.vhdr", {"preprocessing": {"l_freq": 1.0}}),
        (tmp_path / "x_bold.nii.gz", {"atlas": "a.nii.gz"}),
    ]
    with pytest.raises(neurofm.ReaderError, match="no such file"):
        neurofm.read(tmp_path / "missing.nwb")


def test_catalog_select_as_a_dataframe(reaching, tmp_path):
    import pandas as pd

    from neurofm.pipeline import ingest

    assert ingest(reaching[0].parents[1], tmp_path / "c", progress=False).ok
    cat = neurofm.Catalog(tmp_path / "c")
    rows = cat.select(subject_id="S1")
    frame = cat.select(subject_id="S1", as_frame=True)
    assert isinstance(frame, pd.DataFrame) and frame.index.name == "id"
    assert list(frame.index) == [r["id"] for r in rows] == ["sub-S1_ses-20240305"]
    assert frame.loc["sub-S1_ses-20240305", "n_spikes"] == rows[0]["n_spikes"]
    assert list(cat.select(as_frame=True).index) == cat.ids
    empty = cat.select(subject_id="nobody", as_frame=True)
    assert len(empty) == 0 and "n_units" in empty.columns


def test_to_mne_of_a_spike_recording_is_a_clear_error(reaching):
    from neurofm.writers import to_mne

    rec = neurofm.read(reaching[0])
    with pytest.raises(InvalidDataError) as err:
        to_mne(rec)
    message = str(err.value)
    assert message.startswith(
        f"recording {rec.id!r}: to_mne converts an EEG-like RegularSeries, and there is no "
        "signal 'eeg'"
    )
    assert "its sampled series: hand_pos, hand_vel (pass signal=NAME)" in message


@pytest.mark.parametrize(
    "cls",
    [
        "neurofm.models.poyo.POYOConfig",
        "neurofm.models.samba.SambaConfig",
        "neurofm.training.poyo.TrainConfig",
        "neurofm.training.samba.SambaTrainConfig",
    ],
)
def test_config_dataclasses_document_every_field(cls):
    import importlib

    module, name = cls.rsplit(".", 1)
    config = getattr(importlib.import_module(module), name)
    doc = config.__doc__ or ""
    assert "Attributes\n    ----------" in doc, cls
    documented = set(re.findall(r"^    (\w+) : ", doc, re.MULTILINE))
    fields = {f.name for f in dataclasses.fields(config)}
    assert fields <= documented, f"{cls}: undocumented fields {sorted(fields - documented)}"
    assert documented <= fields, f"{cls}: documented but not fields {documented - fields}"


def test_load_poyo_returns_a_named_result(pretrained_poyo):
    from neurofm.models.poyo import POYO
    from neurofm.training.poyo import LoadedPOYO, TrainConfig, load_poyo

    _, ckpt = pretrained_poyo
    loaded = load_poyo(ckpt)
    assert isinstance(loaded, LoadedPOYO)
    model, scaler, cfg = loaded  # unpacks like the tuple it was
    assert model is loaded.model and scaler is loaded.scaler and cfg is loaded.config
    assert isinstance(loaded.model, POYO) and isinstance(loaded.config, TrainConfig)
