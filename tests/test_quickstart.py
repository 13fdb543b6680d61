"""docs/quickstart.md, run as written: the shell steps and the Python snippet."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from xpevents.testing import CollectorHandle

DOC = (Path(__file__).resolve().parents[1] / "docs" / "quickstart.md").read_text()


def _xpevents(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xpevents", *args], cwd=cwd, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


def test_the_quickstart_runs_as_written(collector: CollectorHandle, tmp_path: Path) -> None:
    example = _xpevents("datafile", "example", cwd=tmp_path)
    (tmp_path / "datafile.json").write_text(example.stdout)
    for step in (("datafile", "show", "datafile.json"), ("datafile", "lint", "datafile.json")):
        assert _xpevents(*step, cwd=tmp_path).returncode == 0, step
    snippet = re.search(r"## 4\..*?```python\n(.*?)```", DOC, re.S)
    assert snippet is not None
    result = subprocess.run(
        [sys.executable, "-c", snippet.group(1)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "XPEVENTS_ENDPOINT": collector.base_url},
    )
    assert result.returncode == 0, result.stderr
    stats = collector.wait_for(unique_events=2, timeout=10)
    assert stats["unique_events"] >= 2  # the impression and the conversion (and a decision)
    explain = _xpevents(
        "decide", "datafile.json", "user-42", "checkout_button_color", "--attr", "country=US",
        "--explain", cwd=tmp_path,
    )  # fmt: skip
    assert explain.returncode == 0 and "traffic" in explain.stdout
