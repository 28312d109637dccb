"""Client quotas, set with Kafka's own ``ConfigCommand``: confluent-kafka's AdminClient has no
client-quota API (2.x).

The tool runs from Kafka's jars wherever ``Settings.kafka_tools`` says they are
(``VEILLE_KAFKA_TOOLS_DIR``: a Kafka distribution's ``libs/``; by default the jars the local
broker runs from), with a Java 17+ found at run time: nothing here depends on the local
broker, so provisioning works from any machine that has Kafka's jars and Java.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

from veille.config import Settings
from veille.java import JavaNotFound, find_java
from veille.statedir import write_private

KAFKA_TOOLS_JAVA = 17  # Kafka 4's tools, like its broker, need Java 17+
QUOTA_PARALLELISM = 2  # JVMs at once: the machine may have 2 cores and a broker to run


class QuotaError(RuntimeError):
    """Kafka's tools are missing, or setting a quota failed."""


def _java_client_properties(settings: Settings) -> str:
    """The admin connection of ``settings`` as a Java client --command-config."""
    creds = settings.kafka_credentials()
    lines = [f"security.protocol={creds.protocol}"]
    if creds.mechanism:
        user = creds.username.replace("\\", "\\\\").replace('"', '\\"')
        password = creds.password.replace("\\", "\\\\").replace('"', '\\"')
        module = "scram.ScramLoginModule" if creds.mechanism.startswith("SCRAM") else "plain.PlainLoginModule"
        login = f"org.apache.kafka.common.security.{module}"
        lines += [f"sasl.mechanism={creds.mechanism}",
                  f'sasl.jaas.config={login} required username="{user}" password="{password}";']
    if settings.ssl_ca_location and creds.protocol in ("SSL", "SASL_SSL"):
        lines += ["ssl.truststore.type=PEM", f"ssl.truststore.location={settings.ssl_ca_location}"]
    return "\n".join(lines) + "\n"


def apply_quotas(settings: Settings, quotas: dict[str, dict[str, float]], timeout: float = 120.0) -> None:
    """Set user quotas with Kafka's own ``ConfigCommand``.

    confluent-kafka's AdminClient has no client-quota API (2.x), so this runs the Java tool
    from Kafka's jars (``Settings.kafka_tools``: VEILLE_KAFKA_TOOLS_DIR, or the local broker's),
    QUOTA_PARALLELISM at a time (~1 s each), with a Java 17+ found at run time.
    The admin password goes through a temporary 0600 --command-config file, never argv.
    """
    if not quotas:
        return
    libs = settings.kafka_tools()
    if libs is None or not any(libs.glob("kafka_2.13-*.jar")):
        raise QuotaError(
            f"quotas need Kafka's admin tools: set VEILLE_KAFKA_TOOLS_DIR to a directory of Kafka "
            f"jars (a Kafka distribution's libs/; locally `veille broker fetch` prints one)"
            f"{f', {libs} has no kafka_2.13 jar' if libs is not None else ''}, or skip them with --no-quotas")
    try:
        java = find_java(KAFKA_TOOLS_JAVA)[0]
    except JavaNotFound as exc:
        raise QuotaError(f"quotas need Kafka's admin tools, which need {exc}") from None
    with tempfile.TemporaryDirectory(prefix="veille-quotas-") as tmp:
        conf = Path(tmp) / "admin.properties"
        write_private(conf, _java_client_properties(settings))
        log4j = Path(tmp) / "log4j2.properties"
        log4j.write_text("status = error\nrootLogger.level = ERROR\n")

        def command(user: str, values: dict[str, float]) -> list[str]:
            config = ",".join(f"{k}={v:g}" for k, v in sorted(values.items()))
            return [java, "-Xmx128m", "-XX:TieredStopAtLevel=1", f"-Dlog4j2.configurationFile={log4j}",
                    "-cp", f"{libs}/*", "kafka.admin.ConfigCommand",
                    "--bootstrap-server", settings.kafka_bootstrap(), "--command-config", str(conf),
                    "--alter", "--add-config", config, "--entity-type", "users", "--entity-name", user]

        pending = list(quotas.items())
        running: list[tuple[str, subprocess.Popen[str]]] = []
        failures: list[str] = []
        deadline = time.monotonic() + timeout
        while pending or running:
            while pending and len(running) < QUOTA_PARALLELISM:
                user, values = pending.pop(0)
                running.append((user, subprocess.Popen(command(user, values), stdout=subprocess.PIPE,
                                                       stderr=subprocess.STDOUT, text=True)))
            user, proc = running.pop(0)
            try:
                out, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
            if proc.returncode != 0:
                failures.append(f"{user}: exit {proc.returncode}: {out.strip()[-500:]}")
        if failures:
            raise QuotaError("setting quotas failed:\n" + "\n".join(failures))
