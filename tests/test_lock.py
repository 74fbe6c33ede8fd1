"""``requirements.lock`` pins everything ``make install`` installs, each package with its hashes.

pip in ``--require-hashes`` mode refuses a package the lock leaves out, so every name that
``pyproject.toml`` asks for (dependencies, the ``dev`` extra, the build backend that the
editable install uses without build isolation) must be locked, at a version its range
admits, with at least one SHA-256.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
ENTRY = re.compile(
    r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)((?:\s*\\\n\s*--hash=sha256:[0-9a-f]{64})*)", re.M
)


def locked() -> dict[str, tuple[Version, list[str]]]:
    """name -> (version, SHA-256 hashes) of each entry of the lock."""
    text = LOCK.read_text(encoding="utf-8")
    return {
        canonicalize_name(name): (Version(version), re.findall(r"[0-9a-f]{64}", hashes))
        for name, version, hashes in ENTRY.findall(text)
    }


def required() -> list[Requirement]:
    """What pyproject.toml asks for: dependencies, the dev extra and the build requirements."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    names = (
        project["project"]["dependencies"]
        + project["project"]["optional-dependencies"]["dev"]
        + project["build-system"]["requires"]
    )
    return [Requirement(name) for name in names]


def test_every_entry_is_an_exact_pin_with_hashes():
    entries = locked()
    pins = [line for line in LOCK.read_text().splitlines() if re.match(r"^[A-Za-z0-9]", line)]
    assert len(entries) == len(pins) > 100, "an entry the pattern did not read"
    assert all(hashes for _, hashes in entries.values())


def test_lock_covers_every_requirement_at_an_admitted_version():
    entries = locked()
    for requirement in required():
        name = canonicalize_name(requirement.name)
        assert name in entries, f"{requirement} is not in {LOCK.name}"
        version, _ = entries[name]
        assert requirement.specifier.contains(version, prereleases=True), (requirement, version)


def test_torch_is_the_cpu_build():
    version, hashes = locked()["torch"]
    assert version.public == "2.13.0" and version.local == "cpu"
    assert len(hashes) >= 1
