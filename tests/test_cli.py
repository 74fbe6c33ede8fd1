"""``python -m helpers``: bad input ends in one ``error:`` line and exit code 2, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import DELETE, REPO_ROOT, build_corpus

from helpers.book import claims_file
from helpers.cli import BROKEN_PIPE, main
from helpers.config import load_config


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error(err: str) -> None:
    assert err.startswith("error: ") and "Traceback" not in err, err
    assert sum(line.startswith("error: ") for line in err.splitlines()) == 1, err


def test_check_refuses_train_subjects_the_data_lacks(tmp_path, write_config, capsys):
    """The default [physics, biology, history] on a user's own corpus: refused up front."""
    build_corpus(tmp_path / "corpus", subjects=("chemistry", "physics"))
    config = write_config(tmp_path, data={"train_subjects": DELETE})
    code, out, err = run_main(capsys, "--config", str(config), "check")
    assert code == 2
    assert_one_error(err)
    assert "data.train_subjects" in err and "['biology', 'history']" in err
    assert "it has ['chemistry', 'physics']" in err and "null" in err  # what it has, and the fix
    assert "fine-tuning trains on" not in out  # no report of a fine-tuning that cannot run


def test_check_on_invalid_data_creates_no_results_folder(tmp_path, write_config, capsys):
    config = write_config(tmp_path, paths={"results_dir": "out/results"})
    (tmp_path / "corpus" / "physics" / "empty.txt").write_text("\u200b\n", encoding="utf-8")
    code, _, err = run_main(capsys, "--config", str(config), "check")
    assert code == 2
    assert_one_error(err)
    assert "empty.txt" in err
    assert not (tmp_path / "out").exists()


def test_control_characters_in_a_message_are_shown_escaped(tmp_path, write_config, capsys):
    config = write_config(tmp_path)
    (tmp_path / "corpus" / "physics" / "\x1b[2Jclear.txt").write_text(" ", encoding="utf-8")
    code, _, err = run_main(capsys, "--config", str(config), "check")
    assert code == 2
    assert_one_error(err)
    assert "\x1b" not in err and "\\x1b[2Jclear.txt" in err


@pytest.mark.parametrize(
    "devices, count, fragment",
    [
        ("cuda:0", 0, "cuda:0: this torch sees no CUDA GPU"),
        ("cpu,cuda:3", 2, "cuda:3: this torch sees 2 CUDA GPU(s)"),
        ("meta", 0, "meta: workers encode on cpu, cuda or mps devices only"),
    ],
)
def test_embed_on_a_device_torch_lacks_is_one_line(
    tmp_path, write_config, capsys, monkeypatch, devices, count, fragment
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    config = write_config(tmp_path)
    code, _, err = run_main(
        capsys, "--config", str(config), "embed", "--model", "contrastive", "--devices", devices
    )
    assert code == 2
    assert_one_error(err)
    assert fragment in err and len(err.splitlines()) == 1


def _with_closed_stdout(*argv: str) -> tuple[int, str]:
    """Run ``python -m helpers ARGV`` whose reader of stdout is gone before it writes."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "helpers", *argv],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err.decode()


def test_closed_stdout_ends_quietly(tmp_path, write_config):
    """``python -m helpers claims --json | true``: no BrokenPipeError, the shell's 141."""
    config = write_config(tmp_path)
    claims = claims_file(load_config(config))
    claims.parent.mkdir(parents=True)
    claims.write_text(json.dumps({"ch1_a": {"statement": "a claim", "holds": True}}))
    code, err = _with_closed_stdout("--config", str(config), "claims", "--json")
    assert (code, err) == (BROKEN_PIPE, "")
