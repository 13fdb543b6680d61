"""The size limits the code keeps (docs/architecture.md), checked on every run.

No module in src/ over 400 lines, no class over 350, no function over 60 lines of code
(docstrings, blank lines and comments not counted). ``tools/shape.py`` prints the report.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_no_module_class_or_function_over_the_limits() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "shape.py"), str(ROOT / "src" / "xpevents")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout
    assert "0 over the limits" in result.stdout
