"""The Makefile refuses a Python older than 3.11 with a clear message, before installing, and
builds the book with the configuration it is given (``CONFIG=``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FAKE_PYTHON = f"""#!{sys.executable}
# Stands in for an old interpreter: reports version 3.10 and runs what it is given.
import sys
sys.version_info = (3, 10, 12, "final", 0)
sys.version = "3.10.12 (stand-in)"
if sys.argv[1:2] == ["-c"]:
    exec(sys.argv[2])
else:
    sys.exit("the stand-in only runs -c")
"""


def test_old_python_is_refused_with_a_clear_message(tmp_path):
    for name in ("Makefile", "pyproject.toml", "requirements.lock"):
        shutil.copy(ROOT / name, tmp_path / name)
    fake = tmp_path / "python3.10"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    proc = subprocess.run(
        ["make", "install", f"PYTHON={fake}"], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode != 0
    assert "needs Python 3.11 or newer" in proc.stderr + proc.stdout
    assert "3.10.12" in proc.stderr + proc.stdout
    assert not (tmp_path / ".venv").exists(), "nothing may be installed"


ECHO_PYTHON = """#!/bin/sh
# Stands in for the venv's python: prints the configuration the target would build with.
echo "config=$ANISOTROPY_BOOK_CONFIG"
"""


def make_sandbox(folder: Path, python_script: str) -> None:
    """The Makefile and its inputs in ``folder``, with ``python_script`` as the venv's python."""
    for name in ("Makefile", "pyproject.toml", "requirements.lock"):
        shutil.copy(ROOT / name, folder / name)
    bin_dir = folder / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text(python_script)
    (bin_dir / "python").chmod(0o755)


@pytest.mark.parametrize(
    ("given", "expected"),
    [([], "config.yaml"), (["CONFIG=editions/published.yaml"], "editions/published.yaml")],
)
def test_book_targets_build_with_the_configuration_given(tmp_path, given, expected):
    make_sandbox(tmp_path, ECHO_PYTHON)
    (tmp_path / ".venv" / ".installed").touch()  # newer than its inputs: no install
    env = {k: v for k, v in os.environ.items() if k not in ("ANISOTROPY_BOOK_CONFIG", "CONFIG")}
    proc = subprocess.run(
        ["make", "--no-print-directory", "models", *given],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"config={tmp_path / expected}" in proc.stdout.splitlines()


LOGGING_PYTHON = """#!/bin/sh
# Stands in for the venv's python: records each command instead of installing anything.
echo "$*" >> "$(dirname "$0")/../calls.log"
"""


def test_install_is_hash_checked_from_the_lock(tmp_path):
    make_sandbox(tmp_path, LOGGING_PYTHON)
    proc = subprocess.run(
        ["make", "install", f"PYTHON={sys.executable}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    calls = (tmp_path / ".venv" / "calls.log").read_text().splitlines()
    installs = [call.split() for call in calls if call.startswith("-m pip install")]
    assert installs[0][-3:] == ["--require-hashes", "-r", "requirements.lock"]
    # Anything else installs only the project itself, and none of its dependencies.
    for call in installs[1:]:
        assert "--no-deps" in call and "--no-build-isolation" in call and call[-2:] == ["-e", "."]
    assert (tmp_path / ".venv" / ".installed").exists()
