"""The README's install section: the wheel builds offline and holds everything it needs."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from xpevents import __version__

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (built,) = out.glob("xpevents-*.whl")
    return built


def test_the_wheel_has_the_version_the_readme_installs(wheel: Path) -> None:
    assert wheel.name == f"xpevents-{__version__}-py3-none-any.whl"
    assert f"xpevents-{__version__}-py3-none-any.whl" in (ROOT / "README.md").read_text()
    assert f"## {__version__}" in (ROOT / "CHANGELOG.md").read_text()


def test_the_wheel_ships_package_data_entry_points_and_extras(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "xpevents/example_datafile.json" in names and "xpevents/py.typed" in names
    assert {n for n in names if n.endswith(".lua")}, "the Redis spool's Lua scripts"
    dashboard = "xpevents/collector/dashboard/"
    for part in ("templates/page.html", "static/dashboard.js", "static/dashboard.css"):
        assert dashboard + part in names, "the collector dashboard's files"
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    metadata = zipfile.ZipFile(wheel).read(meta).decode()
    assert "Provides-Extra: official" in metadata and "Provides-Extra: redis" in metadata
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "xpevents = xpevents.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()


def test_the_installed_wheel_runs_its_command(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
         "--target", str(target), str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import xpevents, json;"
        "assert xpevents.__file__.startswith(sys.argv[1]), xpevents.__file__;"
        "from xpevents.example import example_datafile; json.loads(example_datafile());"
        "from xpevents.cli import main; main(['datafile', 'lint', 'example'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(target)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "0 finding(s)" in result.stdout
