"""The user's documents: every link resolves, nothing speaks of this project's own set-up or its history, and the
README stays a short user's document (history goes to CHANGELOG.md, measurements to docs/benchmarks.md)."""
from __future__ import annotations

import re

import pytest

from conftest import REPO

DOCUMENTS = [REPO / "README.md", REPO / "CHANGELOG.md", *sorted((REPO / "docs").glob("*.md"))]


def prose(text: str) -> str:
    """The text without code blocks and inline code (a link written as an example is not a link)."""
    return re.sub(r"`[^`\n]*`", "", re.sub(r"```.*?```", "", text, flags=re.S))


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_every_link_resolves(document):
    links = re.findall(r"\]\(([^)\s]+)\)", prose(document.read_text()))
    missing = [link for link in links if not link.startswith(("http://", "https://", "#"))
               and not (document.parent / link.split("#")[0]).exists()]
    assert not missing, f"{document.name} links to what is not there: {missing}"


@pytest.mark.parametrize("document", [d for d in DOCUMENTS if d.name != "CHANGELOG.md"], ids=lambda p: p.name)
def test_no_user_document_speaks_of_this_projects_setup_or_history(document):
    text = document.read_text()
    for phrase in ("../shared", "this session", "in this version", "until this version", "this project's machines"):
        assert phrase not in text.lower(), f"{document.name}: {phrase!r}"


def test_the_readme_is_a_short_users_document():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 220
    for heading in ("## Install", "## Quickstart", "## Commands", "## Results", "## The run folder", "## Guarantees",
                    "## For students", "## Development"):
        assert heading in text, heading
