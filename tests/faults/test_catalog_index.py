"""Catalog index entries are checked, not trusted (issue 14.5, failure 7)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from faultkit import run_main

from neurofm.data import Catalog
from neurofm.errors import CatalogError


def _edit_index(catalog: Path, edit) -> None:
    index = catalog / "catalog.json"
    doc = json.loads(index.read_text())
    edit(doc["recordings"])
    index.write_text(json.dumps(doc))


def test_malformed_entries_are_reported_by_id(reaching_catalog):
    good = sorted(Catalog(reaching_catalog).ids)
    _edit_index(
        reaching_catalog,
        lambda entries: entries.extend(
            [{"id": 5}, {"file": "x.h5"}, "not an entry", {"id": "r", "file": 3}]
        ),
    )
    cat = Catalog(reaching_catalog)
    assert cat.ids == good  # the well-formed entries stay usable
    assert cat.problems == [
        "recordings[4] (id 5): field 'id' must be a non-empty string without '/' (got 5)",
        "recordings[5]: field 'id' is missing",
        "recordings[6]: must be a mapping of fields, got str",
        "recordings[7] (id 'r'): field 'file' must be a string (got 3)",
    ]
    code, out, err = run_main("info", str(reaching_catalog))
    assert code == 1
    assert "Traceback" not in err
    assert [line.split()[0] for line in out.splitlines()[3:7]] == good
    for problem in cat.problems:
        assert f"BROKEN  {problem}" in out
    code, out, _ = run_main("verify", str(reaching_catalog))
    assert code == 1
    assert "BROKEN  recordings[4] (id 5): field 'id' must be a non-empty string" in out


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

    def point_elsewhere(entries):
        entries[0]["file"] = target

    _edit_index(reaching_catalog, point_elsewhere)
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
