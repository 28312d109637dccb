"""The wheel the Docker image installs (`pip install .`) holds every module and file of the hub.

An editable install (`make setup`) maps the whole source tree, so a package missing from
``pyproject.toml``'s list works in every test and breaks only in the image: the desk, single
sign-on and grouping packages once were. Built here for real, then compared with git's files.
"""

from __future__ import annotations

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


def test_the_wheel_holds_every_tracked_module_and_file(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "-w", str(tmp_path), str(ROOT)], check=True, timeout=600,
                   capture_output=True)
    wheel = next(tmp_path.glob("veille-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = set()
    for path in _tracked():
        top, _, rest = path.partition("/")
        expected.add(f"{ROOTS[top]}/{rest}")
    missing = sorted(expected - names)
    assert not missing, f"{len(missing)} files of the source tree are not in the wheel: {missing[:20]}"
