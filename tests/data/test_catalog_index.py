"""The catalog's SQLite index: index-only queries, migration from catalog.json, damaged files,
registering files written elsewhere, writers that wait on each other (issue 18.3)."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from contextlib import closing
from pathlib import Path

import h5py
import numpy as np
import pytest

from neurofm.data import Catalog, Intervals, Recording, Spikes, Units
from neurofm.data import catalog as catalog_module
from neurofm.errors import CatalogError, InvalidDataError


def _rec(rid: str, subject: str, n_units: int = 3, domains: bool = True) -> Recording:
    rng = np.random.default_rng(len(rid) + n_units)
    times = np.sort(rng.uniform(0, 10, 50))
    signals = {
        "spikes": Spikes(
            times,
            rng.integers(0, n_units, 50),
            Units([f"u{i}" for i in range(n_units)], {"area": ["M1"] * n_units}),
        )
    }
    if domains:
        signals["train_domain"] = Intervals([0.0, 5.0], [4.0, 8.0])
        signals["valid_domain"] = Intervals([8.0], [9.0])
        signals["test_domain"] = Intervals([], [])
    return Recording(rid, signals, duration=10.0, metadata={"subject_id": subject})


@pytest.fixture()
def cat_path(tmp_path) -> Path:
    cat = Catalog(tmp_path / "cat", create=True)
    cat.add(_rec("a", "S0", 2))
    cat.add(_rec("b", "S0", 3))
    cat.add(_rec("c", "S1", 4))
    return tmp_path / "cat"


@pytest.fixture()
def h5_opens(monkeypatch) -> list[str]:
    """Paths of every HDF5 file opened (by anyone) while the test runs."""
    opened: list[str] = []
    real = h5py.File

    class Spy(real):
        def __init__(self, name, *args, **kwargs):
            opened.append(str(name))
            super().__init__(name, *args, **kwargs)

    monkeypatch.setattr(h5py, "File", Spy)
    return opened


def _make_legacy(path: Path) -> list[dict]:
    """Turn a catalog into one of an older neurofm: its entries in catalog.json, no SQLite."""
    entries = Catalog(path).entries
    doc = {"format": "neurofm.catalog", "version": 1, "recordings": entries}
    (path / "catalog.json").write_text(json.dumps(doc, indent=1))
    (path / "catalog.sqlite").unlink()
    return entries


# ---- index-only queries ------------------------------------------------------------------


def test_select_splits_and_vocabularies_open_no_recording(cat_path, h5_opens):
    from neurofm.training.datasets import OpenRecordings, split_domains_of
    from neurofm.training.poyo import catalog_vocab

    cat = Catalog(cat_path)
    assert [e["id"] for e in cat.select(subject_id="S0", area="M1")] == ["a", "b"]
    train = cat.domains("train")
    assert list(train) == ["a", "b", "c"]
    np.testing.assert_array_equal(train["b"].start, [0.0, 5.0])
    np.testing.assert_array_equal(train["b"].end, [4.0, 8.0])
    assert train["b"].name == "train_domain"
    assert len(cat.domains("test")["a"]) == 0  # an empty domain is indexed too
    assert cat.domains("nope") == {}
    assert cat.unit_ids(["c", "a"]) == {"c": ["u0", "u1", "u2", "u3"], "a": ["u0", "u1"]}
    assert sorted(split_domains_of(cat, "valid")) == ["a", "b", "c"]
    assert split_domains_of(cat, "test") == {}  # empty domains are left out
    with OpenRecordings(cat) as recs:
        assert sorted(split_domains_of(recs, "train", ["c"])) == ["c"]
    units, sessions = catalog_vocab(cat, ["b", "a"])
    assert units == ["b/u0", "b/u1", "b/u2", "a/u0", "a/u1"] and sessions == ["b", "a"]
    assert h5_opens == []  # not one recording file was opened
    with pytest.raises(CatalogError, match="no recording 'x'"):
        cat.domains("train", ["a", "x"])


def test_vocabulary_of_a_recording_without_spikes_is_a_clear_error(tmp_path, h5_opens):
    from neurofm.data import RegularSeries
    from neurofm.training.poyo import catalog_vocab

    cat = Catalog(tmp_path / "cat", create=True)
    cat.add(Recording("eeg", {"eeg": RegularSeries(np.zeros((10, 2)), 10.0)}))
    h5_opens.clear()
    with pytest.raises(InvalidDataError, match="recording 'eeg' has no 'spikes' signal"):
        catalog_vocab(cat, ["eeg"])
    assert h5_opens == []


def test_another_writers_rows_are_read_incrementally(cat_path):
    reader, writer = Catalog(cat_path), Catalog(cat_path)
    writer.add(_rec("d", "S2"))
    assert "d" not in reader
    reader.refresh()
    assert reader.ids == ["a", "b", "c", "d"] and reader.entry("d")["subject_id"] == "S2"
    with closing(sqlite3.connect(cat_path / "catalog.sqlite")) as db, db:
        db.execute("DELETE FROM recordings WHERE id = 'a'")  # by hand: no new generation
    writer.add(_rec("e", "S2"))
    reader.refresh()  # a row count that does not add up: everything is read again
    assert reader.ids == ["b", "c", "d", "e"] == Catalog(cat_path).ids


# ---- writers --------------------------------------------------------------------------------


def test_register_indexes_a_file_written_into_the_folder(tmp_path, h5_opens):
    cat = Catalog(tmp_path / "cat", create=True)
    cat.add(_rec("a", "S0"))
    _rec("w", "S3", 5).save(tmp_path / "cat" / "w.h5")  # as a Dask worker would
    entry = cat.register("w.h5")
    assert entry["id"] == "w" and entry["file"] == "w.h5" and entry["n_units"] == 5
    assert Catalog(cat.path).entry("w") == entry
    h5_opens.clear()
    fresh = Catalog(cat.path)
    assert sorted(fresh.domains("valid")) == ["a", "w"]
    assert fresh.unit_ids(["w"])["w"] == [f"u{i}" for i in range(5)]
    assert h5_opens == []
    with pytest.raises(CatalogError, match="already exists"):
        cat.register(tmp_path / "cat" / "w.h5", overwrite=False)
    _rec("out", "S3").save(tmp_path / "out.h5")
    with pytest.raises(CatalogError, match=r"out\.h5: not inside the catalog folder"):
        cat.register(tmp_path / "out.h5")
    assert sorted(Catalog(cat.path).ids) == ["a", "w"]


def test_a_writer_waits_for_another_then_gives_up_with_a_clear_error(cat_path, monkeypatch):
    monkeypatch.setattr(catalog_module, "LOCK_TIMEOUT", 0.2)
    with closing(sqlite3.connect(cat_path / "catalog.sqlite", isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")  # another writer in the middle of a transaction
        with pytest.raises(CatalogError) as err:
            Catalog(cat_path).add(_rec("d", "S0"))
        assert str(err.value) == (
            f"{cat_path / 'catalog.sqlite'}: waited 0.2 s for another writer of this catalog "
            "to finish updating the index"
        )
        assert Catalog(cat_path).ids == ["a", "b", "c"]  # readers are not blocked (WAL)
        other.execute("ROLLBACK")
    Catalog(cat_path).add(_rec("d", "S0"))
    assert Catalog(cat_path).ids == ["a", "b", "c", "d"]


# ---- damaged or foreign index files ---------------------------------------------------------


def test_a_damaged_or_foreign_index_is_a_clear_error(tmp_path):
    folder = tmp_path / "cat"
    folder.mkdir()
    db = folder / "catalog.sqlite"
    db.write_bytes(b"this is not a database, just text" * 100)
    with pytest.raises(CatalogError, match=rf"^{db}: cannot read the catalog index \(file is not"):
        Catalog(folder)
    with pytest.raises(CatalogError, match=r"move the index aside \(to catalog.sqlite.damaged\) "
                       rf"and ingest the sources into {folder} again"):  # fmt: skip
        Catalog(folder)
    db.unlink()
    with closing(sqlite3.connect(db)) as other, other:
        other.execute("CREATE TABLE songs (title TEXT)")
    with pytest.raises(CatalogError) as err:
        Catalog(folder)
    assert str(err.value) == (
        f"{db}: not a neurofm catalog index (tables ['songs']; expected meta, recordings, "
        "units, domains)"
    )


def test_an_index_of_a_newer_version_or_another_format_is_refused(cat_path):
    db = cat_path / "catalog.sqlite"
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("UPDATE meta SET value = 99 WHERE key = 'version'")
    with pytest.raises(CatalogError, match=r"version 99 is newer than this neurofm supports"):
        Catalog(cat_path)
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("UPDATE meta SET value = 'other' WHERE key = 'format'")
    with pytest.raises(CatalogError, match=rf"^{db}: meta 'format' must be 'neurofm.catalog'"):
        Catalog(cat_path)


def test_a_truncated_index_is_a_clear_error(cat_path):
    db = cat_path / "catalog.sqlite"
    db.write_bytes(db.read_bytes()[:1500])  # the header survives, the pages do not
    with pytest.raises(CatalogError, match=rf"^{db}: cannot read the catalog index"):
        Catalog(cat_path)


# ---- migration from catalog.json ------------------------------------------------------------


def test_catalog_json_is_migrated_on_first_open(cat_path, h5_opens, caplog):
    entries = _make_legacy(cat_path)
    legacy = cat_path / "catalog.json"
    doc = json.loads(legacy.read_text())
    doc["recordings"] += [{"id": "bad/id", "file": "x.h5"}, "not an entry"]
    legacy.write_text(json.dumps(doc))
    raw = legacy.read_bytes()

    cat = Catalog(cat_path)
    assert cat.entries == entries
    assert cat.problems == [
        "catalog.json recordings[3] (id 'bad/id'): field 'id' must be a non-empty string "
        "without '/' (got 'bad/id') (not migrated; kept in catalog.json.migrated)",
        "catalog.json recordings[4]: must be a mapping of fields, got str (not migrated; kept "
        "in catalog.json.migrated)",
    ]
    assert "recordings[4]: must be a mapping of fields, got str: not migrated" in caplog.text
    assert not legacy.exists()
    assert (cat_path / "catalog.json.migrated").read_bytes() == raw  # kept, byte for byte
    assert {"catalog.sqlite-wal", "catalog.sqlite-shm"} <= {p.name for p in cat_path.iterdir()}
    cat.close()  # SQLite's own files go with the last connection
    assert sorted(p.name for p in cat_path.iterdir()) == [
        "a.h5",
        "b.h5",
        "c.h5",
        "catalog.json.migrated",
        "catalog.sqlite",
    ]
    with closing(sqlite3.connect(cat_path / "catalog.sqlite")) as db:
        meta = dict(db.execute("SELECT key, value FROM meta"))
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert meta["migrated_from"] == hashlib.sha256(raw).hexdigest()

    # Migrated rows do not know their units and domains: each recording is read once...
    assert h5_opens == []
    assert sorted(cat.domains("train")) == ["a", "b", "c"]
    assert sorted(Path(p).name for p in h5_opens) == ["a.h5", "b.h5", "c.h5"]
    h5_opens.clear()
    # ... and its row completed: from then on, the index alone answers.
    again = Catalog(cat_path)
    assert again.problems == []  # reported once, by the open that migrated
    np.testing.assert_array_equal(again.domains("train")["c"].end, [4.0, 8.0])
    assert again.unit_ids(["a"]) == {"a": ["u0", "u1"]}
    assert h5_opens == []


def test_a_migration_that_fails_halfway_leaves_the_json_catalog(cat_path, monkeypatch):
    entries = _make_legacy(cat_path)
    raw = (cat_path / "catalog.json").read_bytes()

    def crash(conn, rows):
        next(iter(rows))
        raise RuntimeError("power cut")

    monkeypatch.setattr(catalog_module, "_fill_index", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        Catalog(cat_path)
    assert (cat_path / "catalog.json").read_bytes() == raw
    assert sorted(p.name for p in cat_path.iterdir()) == ["a.h5", "b.h5", "c.h5", "catalog.json"]
    monkeypatch.undo()
    assert Catalog(cat_path).entries == entries
    assert not (cat_path / "catalog.json").exists()


def test_a_migration_killed_halfway_leaves_the_json_catalog(cat_path):
    entries = _make_legacy(cat_path)
    script = textwrap.dedent(
        f"""
        import os, signal
        from neurofm.data import catalog

        def killed(conn, rows):
            for entry, details in rows:
                conn.execute(catalog._INSERT_ROW, catalog._row_values(entry, False, 1))
                os.kill(os.getpid(), signal.SIGKILL)

        catalog._fill_index = killed
        catalog.Catalog({str(cat_path)!r})
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    left = sorted(cat_path.glob(".catalog.sqlite.*.tmp"))
    assert len(left) == 1 and not (cat_path / "catalog.sqlite").exists()
    cat = Catalog(cat_path)  # migrates; as a writer meanwhile, it removes the dead one's file
    assert cat.entries == entries
    assert not left[0].exists() and cat.leftovers() == []


def test_a_migration_interrupted_after_the_new_index_is_finished_on_next_open(
    cat_path, monkeypatch
):
    entries = _make_legacy(cat_path)
    monkeypatch.setattr(catalog_module, "_retire_legacy", lambda folder: None)
    Catalog(cat_path)  # as if killed between the link and the rename
    assert (cat_path / "catalog.json").exists() and (cat_path / "catalog.sqlite").exists()
    monkeypatch.undo()
    assert Catalog(cat_path).entries == entries
    assert not (cat_path / "catalog.json").exists()
    assert (cat_path / "catalog.json.migrated").exists()


def test_a_json_written_by_an_older_neurofm_after_migration_is_left_alone(cat_path, caplog):
    _make_legacy(cat_path)
    Catalog(cat_path)
    stray = '{"format": "neurofm.catalog", "version": 1, "recordings": []}'
    (cat_path / "catalog.json").write_text(stray)
    assert Catalog(cat_path).ids == ["a", "b", "c"]
    assert "catalog.json: ignored: the index is catalog.sqlite" in caplog.text
    assert (cat_path / "catalog.json").read_text() == stray


def test_a_json_catalog_that_cannot_be_migrated_is_read_as_it_is(cat_path, monkeypatch):
    entries = _make_legacy(cat_path)

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(catalog_module, "_build_index", read_only)
    cat = Catalog(cat_path)
    assert cat.entries == entries and not (cat_path / "catalog.sqlite").exists()
    assert sorted(cat.domains("valid")) == ["a", "b", "c"]  # read from the recordings
    assert cat.unit_ids(["b"]) == {"b": ["u0", "u1", "u2"]}
    with pytest.raises(CatalogError, match=r"catalog\.json: cannot migrate the index"):
        cat.add(_rec("d", "S0"))


def test_a_catalog_in_a_read_only_folder_is_read(cat_path):
    """WAL needs a shared-memory file beside the index; a read-only folder has none."""
    root = Path(tempfile.mkdtemp(prefix="neurofm-ro-"))
    try:
        root.chmod(0o755)  # readable by the unprivileged user the reader runs as
        folder = root / "cat"
        shutil.copytree(cat_path, folder)
        for path in [*folder.iterdir(), folder]:
            path.chmod(0o555 if path.is_dir() else 0o444)
        script = textwrap.dedent(
            """
            import os, sys
            from neurofm.data import Catalog
            if os.geteuid() == 0:  # root writes anywhere: read as nobody instead
                os.setgid(65534)
                os.setuid(65534)
            cat = Catalog(sys.argv[1])
            print(cat.ids, sorted(cat.domains("train")), cat.unit_ids(["a"])["a"])
            """
        )
        proc = subprocess.run(
            [sys.executable, "-c", script, str(folder)], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "['a', 'b', 'c'] ['a', 'b', 'c'] ['u0', 'u1']"
        assert sorted(p.name for p in folder.iterdir()) == [
            "a.h5",
            "b.h5",
            "c.h5",
            "catalog.sqlite",
        ]
    finally:
        for path in root.rglob("*"):
            path.chmod(0o755)
        shutil.rmtree(root)


def _domains_in_child(cat: Catalog, queue) -> None:
    queue.put(sorted(cat.domains("train")))


def test_a_catalog_pickles_and_forks_with_its_own_connection(cat_path):
    import multiprocessing
    import pickle

    cat = Catalog(cat_path)
    assert sorted(cat.domains("valid")) == ["a", "b", "c"]  # the parent holds a connection
    clone = pickle.loads(pickle.dumps(cat))  # what a spawned DataLoader worker receives
    assert clone.ids == cat.ids and sorted(clone.unit_ids()) == ["a", "b", "c"]
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_domains_in_child, args=(cat, queue))
    child.start()
    assert queue.get(timeout=60) == ["a", "b", "c"]
    child.join(timeout=60)
    assert child.exitcode == 0
    cat.add(_rec("d", "S0"))  # the parent's connection still works after the child is gone
    assert Catalog(cat_path).ids == ["a", "b", "c", "d"]
