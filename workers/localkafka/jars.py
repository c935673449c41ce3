"""Fetch the Kafka broker's jars with Maven once, into a cache outside the repo.

No Debian or PyPI package ships a Kafka broker; Maven Central does (org.apache.kafka:kafka_2.13).
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from pathlib import Path

from workers.errors import BrokerError
from workers.localkafka.config import KAFKA_VERSION, cache_root, log4j_version_for, render_pom

__all__ = ["JarFetchError", "ensure_jars", "jars_dir"]

_COMPLETE = ".complete"


class JarFetchError(BrokerError):
    """Maven is missing or could not resolve the Kafka artifacts."""


def jars_dir(version: str = KAFKA_VERSION) -> Path:
    """Where the jars of Kafka `version` live (whether or not fetched yet)."""
    return cache_root() / f"kafka-{version}" / "libs"


def _is_complete(libs: Path, version: str) -> bool:
    return (libs / _COMPLETE).is_file() and (libs / f"kafka_2.13-{version}.jar").is_file()


def ensure_jars(version: str = KAFKA_VERSION) -> Path:
    """Return the directory holding every jar of the broker's classpath, fetching it on first use.

    Safe to call from several processes at once: a file lock serialises the Maven run, and the
    directory only appears (by rename) once it is complete.
    """
    libs = jars_dir(version)
    if _is_complete(libs, version):
        return libs
    home = libs.parent
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_complete(libs, version):
            return libs
        _fetch(home, libs, version)
    return libs


def _fetch(home: Path, libs: Path, version: str) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise JarFetchError("Maven (`mvn`) is not on PATH; install it (apt-get install -y maven)")
    pom = home / "pom.xml"
    pom.write_text(render_pom(version, log4j_version_for(version)))
    staging = home / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    cmd = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}",
        "-DincludeScope=runtime",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not (staging / f"kafka_2.13-{version}.jar").is_file():
        output = (done.stdout + done.stderr).strip()[-4000:]
        raise JarFetchError(f"`{' '.join(cmd)}` failed (exit {done.returncode}):\n{output}")
    _check_single_kafka_version(staging, version)
    (staging / _COMPLETE).write_text(version + "\n")
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)


def _check_single_kafka_version(libs: Path, version: str) -> None:
    """Mixed org.apache.kafka versions fail at run time with NoSuchMethodError; refuse them now."""
    odd = sorted(jar.name for jar in libs.glob("kafka*.jar") if not jar.name.endswith(f"-{version}.jar"))
    if odd:
        raise JarFetchError(f"Kafka jars of another version than {version}: {', '.join(odd)}")
