"""The wheel the Docker image installs (`pip install .`) holds every module and file of the hub.

An editable install (`make setup`) maps the whole source tree, so a package missing from
``pyproject.toml``'s list works in every test and breaks only in the image: the desk, single
sign-on and grouping packages once were. Built here for real, then compared with git's files.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from paths import ROOT

# Source directory -> where it lands in the wheel (pyproject.toml's package-dir).
ROOTS = {"veille": "veille", "schemas": "veille/schemas", "producers": "veille/producers",
         "streams": "veille/streams", "sinks": "veille/sinks"}


def _tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files", *ROOTS], cwd=ROOT, capture_output=True, text=True, check=True)
    return [line for line in out.stdout.splitlines() if line]


def _clean_copy(dest: Path) -> Path:
    # What git tracks, as a fresh clone has it: building in the work tree would reuse a stale
    # build/ directory left by an earlier build, holding files the package list no longer has.
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    for name in out.stdout.splitlines():
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def test_the_wheel_holds_every_tracked_module_and_file(tmp_path: Path) -> None:
    source = _clean_copy(tmp_path / "src")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "-w", str(tmp_path / "dist"), str(source)], check=True, timeout=600,
                   capture_output=True)
    wheel = next((tmp_path / "dist").glob("veille-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = set()
    for path in _tracked():
        top, _, rest = path.partition("/")
        expected.add(f"{ROOTS[top]}/{rest}")
    missing = sorted(expected - names)
    assert not missing, f"{len(missing)} files of the source tree are not in the wheel: {missing[:20]}"
