"""The Makefile refuses a Python older than 3.11 with a clear message, before installing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

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
    for name in ("Makefile", "pyproject.toml", "constraints.txt"):
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
