"""No code from a model folder ever runs, and a broken model folder is one line, not a traceback.

* A folder whose ``config.json`` (or ``tokenizer_config.json``) has an ``auto_map`` to a
  ``.py`` beside it is refused before transformers reads it: the file is never imported,
  whether stdin answers "y" to transformers' question or is closed, and the message names
  the folder and the ``auto_map`` entry (exit code 2 at the command line).
* A ``modules.json`` naming a class outside sentence-transformers, or a PEFT adapter,
  is refused the same way.
* Even past that check, every loader gets ``trust_remote_code=False``: transformers then
  refuses on its own, without asking.
* A bad ``config.json``, garbage weights, a FIFO for weights or an invalid hub id end
  ``metrics`` with exit code 2 and one line (never a hang).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, write_config
from test_cache_safety import deadline
from tinymodel import edit_json, remote_code_model, tiny_model

import helpers.model_folders as model_folders
from helpers.cli import main
from helpers.encoders import build_sentence_transformer, load_encoder
from helpers.model_folders import ModelUnavailableError, UntrustedModelError

ENTRY = "AutoConfig -> evil.EvilConfig"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def config(tmp_path) -> Path:
    return write_config(tmp_path)


def run_cli(config: Path, *args: str, stdin) -> subprocess.CompletedProcess:
    """``python -m helpers --config CONFIG ARGS`` in a subprocess, offline."""
    options = {"input": stdin} if isinstance(stdin, str) else {"stdin": stdin}
    return subprocess.run(
        [sys.executable, "-m", "helpers", "--config", str(config), *args],
        cwd=REPO_ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        **options,
    )


def in_process(config: Path, *args: str) -> tuple[int, str]:
    """``helpers.cli.main`` in this process: exit code and stderr."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["--config", str(config), *args])
    return code, err.getvalue()


def assert_one_line_error(stderr: str, *fragments: str) -> None:
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, stderr[-3000:]
    missing = [f for f in fragments if f not in errors[0]]
    assert not missing, f"{missing} not in: {errors[0]}"


@pytest.mark.parametrize(
    ("command", "stdin"),
    [("metrics", "y\n"), ("embed", "")],
    ids=["metrics-answers-y", "embed-stdin-empty"],
)
def test_model_folder_code_never_runs(tiny, config, tmp_path, monkeypatch, command, stdin):
    marker = tmp_path / "MARKER"
    evil = remote_code_model(tiny, tmp_path / "evil-model", marker)
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code, stderr = in_process(config, command, "--model", str(evil))
    assert not marker.exists(), "the model folder's code ran"
    assert code == 2, stderr[-3000:]
    assert_one_line_error(stderr, str(evil), "auto_map", ENTRY)


@pytest.mark.slow  # two real processes (torch imports), about 20 s each
@pytest.mark.parametrize(
    ("command", "stdin"),
    [("metrics", "y\n"), ("embed", subprocess.DEVNULL)],
    ids=["metrics-answers-y", "embed-stdin-detached"],
)
def test_model_folder_code_never_runs_in_a_real_process(tiny, config, tmp_path, command, stdin):
    marker = tmp_path / "MARKER"
    evil = remote_code_model(tiny, tmp_path / "evil-model", marker)
    run = run_cli(config, command, "--model", str(evil), stdin=stdin)
    assert not marker.exists(), "the model folder's code ran"
    assert run.returncode == 2, run.stderr[-3000:]
    assert_one_line_error(run.stderr, str(evil), "auto_map", ENTRY)


def test_tokenizer_auto_map_is_refused_too(tiny, tmp_path):
    marker = tmp_path / "MARKER"
    evil = remote_code_model(tiny, tmp_path / "evil", marker, where="tokenizer_config.json")
    with pytest.raises(UntrustedModelError) as info:
        load_encoder(str(evil)).model  # noqa: B018
    assert "tokenizer_config.json" in str(info.value) and "evil.EvilTokenizer" in str(info.value)
    assert not marker.exists()


def test_foreign_sentence_transformers_module_is_refused(tiny, tmp_path):
    folder = shutil.copytree(tiny, tmp_path / "modules")
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Evil", "type": "evil_package.EvilPooling"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(UntrustedModelError, match="evil_package.EvilPooling"):
        load_encoder(str(folder))


def test_auto_map_in_a_module_folder_is_refused(tiny, tmp_path):
    folder = shutil.copytree(tiny, tmp_path / "module-auto-map")
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"auto_map": {"x": "evil.X"}}))
    with pytest.raises(UntrustedModelError, match=r"1_Pooling/config.json.*evil\.X"):
        load_encoder(str(folder))


def test_loaders_refuse_remote_code_even_past_the_check(tiny, tmp_path, monkeypatch):
    """With the folder check switched off, transformers itself refuses: trust_remote_code=False."""
    marker = tmp_path / "MARKER"
    evil = remote_code_model(tiny, tmp_path / "evil", marker)
    monkeypatch.setattr(model_folders, "refuse_remote_code", lambda folder: None)
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))  # an answer, were anything to ask
    with pytest.raises(ModelUnavailableError, match="custom code"):
        build_sentence_transformer(evil, "mean", True, 64)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("damage", "fragments"),
    [
        ("config-not-json", ("config.json", "not valid JSON")),
        ("config-bad-values", ("cannot load this model folder", "hidden size")),
        ("garbage-weights", ("cannot load this model folder", "SafetensorError")),
        ("weights-are-a-fifo", ("model.safetensors", "not a regular file")),
    ],
)
def test_broken_model_folder_is_one_line(tiny, config, tmp_path, damage, fragments):
    folder = shutil.copytree(tiny, tmp_path / "broken")
    if damage == "config-not-json":
        (folder / "config.json").write_text('{"model_type": "bert", "hidden_size": ')
    elif damage == "config-bad-values":
        edit_json(folder / "config.json", hidden_size=17)  # not a multiple of the 2 heads
    elif damage == "garbage-weights":
        (folder / "model.safetensors").write_bytes(os.urandom(4096))
    else:
        (folder / "model.safetensors").unlink()
        os.mkfifo(folder / "model.safetensors")  # reading it would wait for a writer forever
    with deadline(30):
        code, stderr = in_process(config, "metrics", "--model", str(folder))
    assert code == 2, stderr[-3000:]
    assert_one_line_error(stderr, str(folder), *fragments)


def test_invalid_hub_id_is_named_as_such(config):
    code, stderr = in_process(config, "metrics", "--model", "not a/valid id!!")
    assert code == 2
    assert_one_line_error(stderr, "'not a/valid id!!'", "not", "valid Hugging Face hub id")
    assert "reachable" not in stderr


def test_a_plain_tiny_model_still_loads(tiny, config):
    code, stderr = in_process(config, "metrics", "--model", str(tiny), "--json")
    assert code == 0, stderr[-3000:]
