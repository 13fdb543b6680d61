"""docs/integrations.md links every example, and documents every shared option."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from xpevents.integrations.settings import Settings

from apps import EXAMPLES

DOC = Path(__file__).resolve().parent.parent / "docs" / "integrations.md"
PYTHON_EXAMPLES = ["celery", "django", "fastapi", "flask", "lambda", "multiprocessing", "script"]


def test_every_example_has_a_readme_and_is_linked_from_the_guide() -> None:
    text = DOC.read_text()
    for name in PYTHON_EXAMPLES:
        readme = EXAMPLES / name / "README.md"
        assert readme.is_file(), readme
        assert f"](../examples/{name})" in text, name
        assert "```python" in readme.read_text(), f"{readme}: the lines to copy"
        assert "docs/integrations.md" in readme.read_text(), readme


def test_every_relative_link_of_the_guide_resolves() -> None:
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", DOC.read_text()):
        assert (DOC.parent / target).exists(), target


def test_every_shared_option_is_in_the_options_table() -> None:
    text = DOC.read_text()
    for field in dataclasses.fields(Settings):
        if field.name != "source":
            assert f"| `{field.name}` |" in text, field.name
