"""The local schema registry: Java 21+ detection, lifecycle, storage kept across restarts."""

from __future__ import annotations

import json
import os
import socket
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from veille import java as java_mod
from veille.java import find_java, java_major
from veille.local.registry import RegistryError, registry_java

if TYPE_CHECKING:
    from conftest import RegistryFixture

CT = "application/vnd.schemaregistry.v1+json"


def _post(url: str, body: object) -> dict[str, object]:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": CT}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        data: dict[str, object] = json.loads(resp.read())
    return data


def test_refuses_clearly_without_java_21(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    java17 = next((str(p) for p in Path("/usr/lib/jvm").glob("*17*/bin/java")), None)
    if java17 is None:
        pytest.skip("no Java 17 on this machine to play the too-old runtime")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "java").symlink_to(java17)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(java_mod, "JVM_DIRS", (str(tmp_path / "nowhere"),))
    find_java.cache_clear()
    try:
        with pytest.raises(RegistryError, match=r"needs Java 21 or newer.*\(17\)"):
            registry_java()
    finally:
        find_java.cache_clear()


def test_detects_a_java_21_or_newer() -> None:
    try:
        java, major = registry_java()
    except RegistryError as exc:
        pytest.skip(str(exc))
    assert major >= 21
    assert java_major(java) == major


def test_local_registry_binds_loopback_and_keeps_schemas(schema_registry: RegistryFixture) -> None:
    info = schema_registry.info
    assert info.url.startswith("http://127.0.0.1:") and info.url.endswith("/apis/ccompat/v7")
    assert schema_registry.registry.status().answering
    # Nothing listens on the wildcard address: both ports refuse a non-loopback address.
    addr = _non_loopback_address()
    for port in (info.port, info.management_port):
        if addr:
            with socket.socket() as sock:
                sock.settimeout(1)
                assert sock.connect_ex((addr, port)) != 0, f"port {port} reachable on {addr}"
    schema = {"type": "record", "name": "Probe", "fields": [{"name": "x", "type": "int"}]}
    sid = _post(f"{info.url}/subjects/test-probe-value/versions", {"schema": json.dumps(schema)})["id"]
    # H2 in a file under the state dir: the id and the schema survive a restart.
    assert schema_registry.registry.stop(timeout=15)
    assert not schema_registry.registry.status().running
    again = schema_registry.registry.start(port=info.port, die_with_parent=True)
    assert again.url == info.url and again.pid != info.pid
    found = _post(f"{info.url}/subjects/test-probe-value", {"schema": json.dumps(schema)})
    assert found["id"] == sid
    assert (schema_registry.registry.dir / "data").is_dir()
    assert os.path.exists(schema_registry.registry.state_file)


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))  # TEST-NET: no packet is sent for a UDP connect
            addr = str(sock.getsockname()[0])
        except OSError:
            return None
    return None if addr.startswith("127.") else addr
