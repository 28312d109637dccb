"""Finding a Java runtime of at least a given version on this machine, at run time.

Candidates: ``JAVA_HOME``, then ``java`` on the ``PATH``; when neither is recent enough, the
newest JDK in the system's JVM directories (``/usr/lib/jvm`` on Debian and Ubuntu, where a
newer JDK is often installed beside the default one). Each candidate is checked by running
``java -version``; no path is ever assumed.
"""

from __future__ import annotations

import functools
import glob
import os
import re
import shutil
import subprocess
from pathlib import Path

# Where Linux distributions and macOS put JDKs; scanned after JAVA_HOME and PATH.
JVM_DIRS = ("/usr/lib/jvm", "/usr/lib64/jvm", "/usr/java", "/opt/java",
            "/Library/Java/JavaVirtualMachines/*/Contents/Home")


class JavaNotFound(RuntimeError):
    """No Java runtime recent enough; the message lists what was found."""


def java_major(java: str) -> int | None:
    """The major version ``java -version`` reports, None if it does not run."""
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60, check=False)
    except OSError:
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 and match.group(2) else major


def _executable(paths: list[str]) -> list[str]:
    return [p for p in paths if os.path.isfile(p) and os.access(p, os.X_OK)]


def _preferred() -> list[str]:
    found = []
    home = os.environ.get("JAVA_HOME")
    if home:
        found.append(str(Path(home) / "bin" / "java"))
    on_path = shutil.which("java")
    if on_path:
        found.append(on_path)
    return _executable(found)


def _scanned() -> list[str]:
    found: list[str] = []
    for pattern in JVM_DIRS:
        for root in sorted(glob.glob(pattern)):
            found += [*glob.glob(os.path.join(root, "*", "bin", "java")), os.path.join(root, "bin", "java")]
    return _executable(found)


@functools.lru_cache(maxsize=4)
def find_java(minimum: int) -> tuple[str, int]:
    """(java, major): JAVA_HOME or PATH when new enough, else the newest JDK of the JVM dirs."""
    seen: list[str] = []
    checked: set[str] = set()
    best: tuple[str, int] | None = None
    for group in (_preferred(), _scanned()):
        for java in group:
            real = os.path.realpath(java)
            if real in checked:
                continue
            checked.add(real)
            major = java_major(java)
            seen.append(f"{java} ({major or '?'})")
            if major is not None and major >= minimum and (best is None or major > best[1]):
                best = (java, major)
        if best is not None:
            return best
    raise JavaNotFound(
        f"Java {minimum} or newer; none found (looked at JAVA_HOME, PATH and "
        f"{', '.join(JVM_DIRS[:2])}: {', '.join(seen) or 'nothing'}). Install a JDK {minimum}+ "
        f"(e.g. apt-get install openjdk-{minimum}-jre-headless) or set JAVA_HOME")
