"""Run the fuzz tests (tests/test_fuzz.py) for a while and report how many cases they generated.

    .venv/bin/python tests/fuzz_long.py --minutes 20

Runs the fuzz file in rounds of ``--examples`` examples per test (Hypothesis picks a fresh
seed each round) until ``--minutes`` have passed; a round already running is finished, so
the run takes at least that long. Each generated case that reaches ``check`` is counted
(``FUZZ_COUNT_FILE``). Stops at the first failing round and keeps its output; exit code 0
when every round passed. Not collected by pytest (its name does not start with ``test_``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_round(examples: int, count_file: Path, log: Path) -> int:
    """One pytest run of the fuzz file; its exit code. Output goes to ``log``."""
    env = {**os.environ, "FUZZ_EXAMPLES": str(examples), "FUZZ_COUNT_FILE": str(count_file)}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "tests/test_fuzz.py",
        "-x",
        "-q",
        "-p",
        "no:cacheprovider",
        "--hypothesis-show-statistics",
    ]
    with open(log, "w") as out:
        return subprocess.run(
            command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        ).returncode


def cases(count_file: Path) -> int:
    """Cases counted so far (one line each)."""
    return count_file.read_text().count("\n") if count_file.exists() else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20, help="run at least this long")
    parser.add_argument("--examples", type=int, default=300, help="examples per test per round")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="fuzz-long-"))
    count_file = folder / "cases.txt"
    started, rounds, code = time.monotonic(), 0, 0
    while time.monotonic() - started < args.minutes * 60:
        rounds += 1
        log = folder / f"round-{rounds}.log"
        code = run_round(args.examples, count_file, log)
        elapsed = (time.monotonic() - started) / 60
        print(
            f"round {rounds}: exit {code}, {cases(count_file)} cases so far, {elapsed:.1f} min",
            flush=True,
        )
        if code != 0:
            print(f"round {rounds} failed; its output: {log}")
            break
    minutes = (time.monotonic() - started) / 60
    print(
        f"{cases(count_file)} cases in {rounds} round(s), {minutes:.1f} min: "
        f"{'all passed' if code == 0 else 'FAILED'} (logs in {folder})"
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
