"""Catalog index entries are checked, not trusted (issue 14.5, failure 7)."""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from faultkit import run_main

from neurofm.data import Catalog
from neurofm.errors import CatalogError


def _edit_index(catalog: Path, sql: str, *params) -> int:
    """Change the index as a user with the sqlite3 shell would; the rowid it touched."""
    with closing(sqlite3.connect(catalog / "catalog.sqlite")) as db, db:
        return db.execute(sql, params).lastrowid


def test_malformed_entries_are_reported_by_id(reaching_catalog):
    good = sorted(Catalog(reaching_catalog).ids)
    add = "INSERT INTO recordings (id, file, fields) VALUES (?, ?, ?)"
    rows = [
        _edit_index(reaching_catalog, add, "", "x.h5", "{}"),
        _edit_index(reaching_catalog, add, "a/b", "x.h5", "{}"),
        _edit_index(reaching_catalog, add, "q", None, "{}"),
        _edit_index(reaching_catalog, add, "r", b"3", "{}"),
        _edit_index(reaching_catalog, add, "s", "s.h5", "not an entry"),
        _edit_index(reaching_catalog, add, "t", "t.h5", "[1, 2]"),
    ]
    with pytest.raises(sqlite3.IntegrityError, match="NOT NULL"):  # no row without an id
        _edit_index(reaching_catalog, add, None, "y.h5", "{}")
    cat = Catalog(reaching_catalog)
    assert cat.ids == good  # the well-formed entries stay usable
    assert cat.problems == [
        f"recordings row {rows[0]} (id ''): field 'id' must be a non-empty string without '/' "
        "(got '')",
        f"recordings row {rows[1]} (id 'a/b'): field 'id' must be a non-empty string without "
        "'/' (got 'a/b')",
        f"recordings row {rows[2]} (id 'q'): field 'file' is missing",
        f"recordings row {rows[3]} (id 'r'): field 'file' must be a string (got b'3')",
        f"recordings row {rows[4]} (id 's'): field 'fields' must be a JSON object (got "
        "'not an entry')",
        f"recordings row {rows[5]} (id 't'): field 'fields' must be a JSON object (got '[1, 2]')",
    ]
    code, out, err = run_main("info", str(reaching_catalog))
    assert code == 1
    assert "Traceback" not in err
    assert [line.split()[0] for line in out.splitlines()[3:7]] == good
    for problem in cat.problems:
        assert f"BROKEN  {problem}" in out
    code, out, _ = run_main("verify", str(reaching_catalog))
    assert code == 1
    assert f"BROKEN  recordings row {rows[1]} (id 'a/b'): field 'id' must be a non-empty" in out


def test_one_missing_file_does_not_fail_the_listing(reaching_catalog):
    ids = sorted(Catalog(reaching_catalog).ids)
    (reaching_catalog / f"{ids[1]}.h5").unlink()
    code, out, err = run_main("info", str(reaching_catalog))
    assert code == 1
    rows = out.splitlines()[3:]
    assert [r.split()[0] for r in rows if r.startswith("sub-")] == ids
    missing = next(r for r in rows if r.startswith(ids[1]))
    assert "BROKEN" in missing and f"{ids[1]}.h5: no such recording file" in missing
    code, out, _ = run_main("verify", str(reaching_catalog))
    assert code == 1 and f"BROKEN  {ids[1]}: " in out
    with pytest.raises(CatalogError, match="no such recording file"):
        Catalog(reaching_catalog).open(ids[1])


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_entry_files_must_stay_inside_the_catalog(kind, reaching_catalog, tmp_path):
    ids = sorted(Catalog(reaching_catalog).ids)
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(reaching_catalog / f"{ids[0]}.h5", outside / "stolen.h5")
    if kind == "dotdot":
        target = "../../../etc/passwd"
    elif kind == "absolute":
        target = str(outside / "stolen.h5")
    else:
        (reaching_catalog / "link.h5").symlink_to(outside / "stolen.h5")
        target = "link.h5"

    _edit_index(reaching_catalog, "UPDATE recordings SET file = ? WHERE id = ?", target, ids[0])
    cat = Catalog(reaching_catalog)
    with pytest.raises(CatalogError) as err:
        cat.open(ids[0])
    message = str(err.value)
    assert f"recording {ids[0]!r}" in message and "outside the catalog folder" in message
    assert target in message
    code, out, err_text = run_main("info", str(reaching_catalog))
    assert code == 1 and "Traceback" not in err_text
    row = next(r for r in out.splitlines() if r.startswith(ids[0]))
    assert "BROKEN" in row and "outside the catalog folder" in row
    code, out, _ = run_main("verify", str(reaching_catalog))
    assert code == 1 and "outside the catalog folder" in out
