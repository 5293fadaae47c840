"""Catalog: index, queries, up-to-date checks, splits."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import numpy as np
import pytest

from neurofm.data import Catalog, Intervals, Recording, Spikes, Units
from neurofm.data.catalog import split_domains
from neurofm.errors import CatalogError, InvalidDataError


def rec(rid: str, subject: str, area: str, n_spikes: int, sha: str) -> Recording:
    rng = np.random.default_rng(n_spikes)
    return Recording(
        rid,
        {
            "spikes": Spikes(
                np.sort(rng.uniform(0, 10, n_spikes)),
                rng.integers(0, 3, n_spikes),
                Units(["a", "b", "c"], {"area": [area] * 3}),
            )
        },
        metadata={"subject_id": subject, "species": "Macaca mulatta"},
        provenance={"sha256": sha},
    )


@pytest.fixture()
def catalog(tmp_path):
    cat = Catalog(tmp_path / "cat", create=True)
    assert not (tmp_path / "cat").exists()  # nothing is written before the first add
    cat.add(rec("C_1", "C", "M1", 100, "s1"))
    cat.add(rec("C_2", "C", "PMd", 200, "s2"))
    cat.add(rec("J_1", "J", "M1", 300, "s3"))
    return cat


def test_index_and_queries(catalog):
    reopened = Catalog(catalog.path)
    assert reopened.ids == ["C_1", "C_2", "J_1"]
    assert [e["id"] for e in reopened.select(subject_id="C", area="M1")] == ["C_1"]
    assert [e["id"] for e in reopened.select(area=["M1", "PMd"], subject_id="C")] == ["C_1", "C_2"]
    assert [e["n_spikes"] for e in reopened.entries] == [100, 200, 300]
    with pytest.raises(CatalogError, match="unknown field 'colour'"):
        reopened.select(colour="red")
    with reopened.open("J_1") as lazy:
        assert len(lazy.spikes) == 300
    with pytest.raises(CatalogError, match="no recording 'X'"):
        reopened.open("X")


def test_up_to_date_by_source_hash(catalog):
    assert catalog.up_to_date("s2")["id"] == "C_2"
    assert catalog.up_to_date("zz") is None
    (catalog.path / "C_2.h5").unlink()
    assert catalog.up_to_date("s2") is None  # the output is gone: not up to date


def test_re_adding_replaces_the_entry(catalog):
    catalog.add(rec("C_1", "C", "M1", 50, "s9"))
    with closing(sqlite3.connect(catalog.path / "catalog.sqlite")) as db:
        rows = db.execute("SELECT id, n_spikes FROM recordings ORDER BY id").fetchall()
    assert rows == [("C_1", 50), ("C_2", 200), ("J_1", 300)]  # replaced, not duplicated
    assert [e["n_spikes"] for e in catalog.entries] == [50, 200, 300]
    assert [e["n_spikes"] for e in Catalog(catalog.path).entries] == [50, 200, 300]
    with pytest.raises(CatalogError, match="already exists"):
        catalog.add(rec("C_1", "C", "M1", 50, "s9"), overwrite=False)


def test_missing_or_bad_index(tmp_path):
    with pytest.raises(CatalogError, match="not a neurofm catalog"):
        Catalog(tmp_path)
    (tmp_path / "catalog.json").write_text("{broken")
    with pytest.raises(CatalogError, match="cannot read the catalog index"):
        Catalog(tmp_path)


def test_split_domains_never_overlap_and_follow_fractions():
    starts = np.arange(100) * 3.0
    trials = Intervals(starts, starts + 2.0, columns={"split": ["train"] * 80 + ["test"] * 20})
    splits = split_domains(trials, (0.7, 0.1, 0.2), seed=1)
    assert [len(splits[k]) for k in ("train", "valid", "test")] == [70, 10, 20]
    all_starts = np.concatenate([s.start for s in splits.values()])
    assert len(np.unique(all_starts)) == 100
    for name, dom in splits.items():
        others = np.concatenate([s.start for k, s in splits.items() if k != name])
        assert not dom.contains(others + 0.5).any()
    by_column = split_domains(trials, column="split")
    assert [len(by_column[k]) for k in ("train", "valid", "test")] == [80, 0, 20]
    with pytest.raises(InvalidDataError, match="trials 0 and 1 overlap"):
        split_domains(Intervals([0.0, 1.0], [2.0, 3.0]))
    with pytest.raises(InvalidDataError, match="must have one value per split"):
        split_domains(trials, (0.5, 0.5))
