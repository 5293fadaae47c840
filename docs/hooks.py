"""MkDocs hooks: the notebooks under ``notebooks/`` (outside ``docs/``) become pages.

The notebooks live at the top of the repository, where the test suite executes them; here they
are added to the site's files and to the "Notebooks" section of the navigation, so a new
notebook appears in the docs without editing ``mkdocs.yml``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]

# Sphinx roles in the numpydoc docstrings (:class:`~neurofm.data.Recording`) reach the HTML as
# ":class:<code>~neurofm.data.Recording</code>"; shown as code, "~" keeping the last name only.
_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj):<code>(~?)([^<]*)</code>")


def _notebooks() -> list[Path]:
    return sorted((ROOT / "notebooks").glob("*.ipynb"))


def on_config(config: Any) -> Any:
    for entry in config["nav"] or []:
        if isinstance(entry, dict) and "Notebooks" in entry:
            entry["Notebooks"] = list(entry["Notebooks"]) + [
                f"notebooks/{path.name}" for path in _notebooks()
            ]
    return config


def on_page_content(html: str, **kwargs: Any) -> str:
    return _ROLE.sub(
        lambda m: f"<code>{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}</code>",
        html,
    )


@event_priority(100)  # before mkdocs-jupyter turns .ipynb files into pages
def on_files(files: Files, config: Any) -> Files:
    for path in _notebooks():
        files.append(
            File(
                f"notebooks/{path.name}",
                str(ROOT),
                config["site_dir"],
                config["use_directory_urls"],
            )
        )
    return files
