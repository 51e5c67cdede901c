"""The documents stay true: the generated reference matches the schema, every key and every
module is documented, and every link between the documents leads somewhere."""

from __future__ import annotations

import re

import pytest

from streamer.config.schema import PipelineConfig
from tests.conftest import REPO
from tools import make_docs

pytestmark = pytest.mark.timeout(30)

DOCS = REPO / "docs"


def test_the_pipeline_reference_is_what_the_schema_gives():
    assert make_docs.REFERENCE.read_text() == make_docs.reference(), (
        "docs/pipeline-reference.md is stale: run python -m tools.make_docs"
    )


def test_every_key_of_the_schema_says_what_it_is_for():
    sections: dict = {}
    make_docs._walk(PipelineConfig, "", sections)
    undocumented = [
        f"{paths[0] or 'top level'}: {name}"
        for model, paths in sections.items()
        for name, field in model.model_fields.items()
        if not (field.description or "").strip()
    ]
    assert undocumented == []


def test_the_repository_map_names_every_module():
    described = (DOCS / "repository.md").read_text()
    modules = sorted(
        str(path.relative_to(REPO / "streamer"))
        for path in (REPO / "streamer").rglob("*.py")
        if path.name not in ("__init__.py", "__main__.py")
    )
    assert [m for m in modules if m not in described] == []


def test_every_document_is_linked_from_the_readme_and_every_link_leads_somewhere():
    readme = (REPO / "README.md").read_text()
    for doc in sorted(DOCS.glob("*.md")):
        assert f"docs/{doc.name}" in readme, f"the README does not link {doc.name}"
    for page in [REPO / "README.md", *DOCS.glob("*.md")]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
