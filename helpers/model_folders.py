"""What a model folder may hold, and which of its files make its vectors what they are.

Checked before transformers reads a folder (:func:`check_model_folder`):

* its ``config.json`` is a regular file holding a JSON object;
* it holds only files and folders (a FIFO would hang a loader, a broken link fail it);
* it brings no code of its own (:func:`refuse_remote_code`): no ``auto_map`` in any JSON
  file, no ``modules.json`` class outside sentence-transformers, no PEFT adapter.

Every transformers loader also gets :data:`NO_REMOTE_CODE`, so none can import code from
the folder nor ask whether to.

Fingerprints identify a model for cache keys: :func:`weights_fingerprint` (its safetensors
files) and :func:`model_files_fingerprint` (every other file that changes its vectors:
configuration, tokenizer, sentence-transformers modules). Each file's hash is computed once
per file state (path, size, modification time).

>>> import tempfile, pathlib, json
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "config.json").write_text(json.dumps({"auto_map": {"AutoModel": "x.Y"}}))
>>> check_model_folder(folder)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
helpers.model_folders.UntrustedModelError: ... config.json has an auto_map (AutoModel -> x.Y), ...
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cache
from pathlib import Path

from .storage import file_fingerprint, is_regular_file


class ModelUnavailableError(RuntimeError):
    """A model that cannot be loaded here, with what to do about it."""


class UntrustedModelError(ModelUnavailableError):
    """A model folder that would make transformers run Python code shipped with it."""


# --- what a model folder may hold --------------------------------------------------------------------

#: Sub-folders of sentence-transformers modules (``1_Pooling``, ``2_Dense``...).
MODULE_FOLDER = re.compile(r"\d+_.+")
#: The sentence-transformers file that lists a model's modules, and the package its classes
#: must come from (anything else is code the model brings along).
MODULES_FILE = "modules.json"
MODULE_PACKAGE = "sentence_transformers."
#: PEFT adapters name another model to load; the book does not follow them.
ADAPTER_FILE = "adapter_config.json"


def _module_folders(folder: Path) -> list[Path]:
    """Sub-folders holding sentence-transformers modules (by name, or listed in ``modules.json``)."""
    found = {p for p in folder.iterdir() if p.is_dir() and MODULE_FOLDER.fullmatch(p.name)}
    for entry in _modules_list(folder):
        if isinstance(entry, dict) and isinstance(entry.get("path"), str) and entry["path"]:
            sub = (folder / entry["path"]).resolve()
            if sub.is_dir() and sub.is_relative_to(folder.resolve()):
                found.add(sub)
    return sorted(found)


def _read_json(path: Path) -> object:
    """The JSON value in ``path``, or ``None`` when it is not a regular file of valid JSON.

    What transformers cannot parse cannot carry an ``auto_map`` it would follow.
    """
    if not is_regular_file(path):
        return None
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None


def _modules_list(folder: Path) -> list:
    modules = _read_json(folder / MODULES_FILE)
    return modules if isinstance(modules, list) else []


def _find_auto_map(value: object) -> object | None:
    """The first ``auto_map`` value anywhere in a parsed JSON document (iteratively: no recursion limit)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "auto_map" in item:
                return item["auto_map"]
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _describe_entry(auto_map: object) -> str:
    """``AutoConfig -> evil.Config, ...``: what an ``auto_map`` would import, in one short line."""
    if isinstance(auto_map, dict):
        text = ", ".join(f"{key} -> {value}" for key, value in auto_map.items())
    else:
        text = str(auto_map)
    # printable only: the model's own text must not drive the terminal (ANSI escapes)
    text = "".join(c if c.isprintable() else "?" for c in " ".join(text.split()))
    return text if len(text) <= 300 else text[:297] + "..."


def _check_config_json(folder: Path) -> None:
    config = folder / "config.json"
    if not is_regular_file(config):
        raise ModelUnavailableError(f"{config}: not a regular file; a model folder needs one")
    try:
        value = json.loads(config.read_bytes())
    except (OSError, ValueError, RecursionError) as exc:
        reason = " ".join(str(exc).split())[:200]
        raise ModelUnavailableError(
            f"{config}: not valid JSON ({reason}); restore the model's configuration file"
        ) from None
    if not isinstance(value, dict):
        raise ModelUnavailableError(
            f"{config}: holds a {type(value).__name__}, not a JSON object; restore the model's "
            "configuration file"
        )


def _refuse_special_files(folder: Path) -> None:
    """A FIFO, socket, device or broken link in a model folder would hang or fail a loader."""
    for sub in [folder, *_module_folders(folder)]:
        for path in sorted(sub.iterdir()):
            if not (path.is_dir() or is_regular_file(path)):
                raise ModelUnavailableError(
                    f"{path}: not a regular file (a FIFO, socket, device or broken link); a "
                    "model folder holds only files and folders"
                )


def check_model_folder(folder: Path) -> None:
    """Everything checked before transformers reads ``folder``: a ``config.json`` that is a
    JSON object, plain files only, and no code of its own (:func:`refuse_remote_code`).

    Raises :class:`ModelUnavailableError` (:class:`UntrustedModelError` for code).
    """
    folder = Path(folder)
    _check_config_json(folder)
    _refuse_special_files(folder)
    refuse_remote_code(folder)


def refuse_remote_code(folder: Path) -> None:
    """Raise :class:`UntrustedModelError` when loading ``folder`` could run code shipped with it.

    Checked before transformers sees the folder, so it never prompts and never imports:

    * an ``auto_map`` in any JSON file of the folder or of its module folders (transformers
      would import the classes it names from ``.py`` files of the model);
    * a ``modules.json`` naming a module class outside sentence-transformers;
    * a PEFT ``adapter_config.json`` (it names another model to load).

    """
    folder = Path(folder)
    if (folder / ADAPTER_FILE).exists():
        raise UntrustedModelError(
            f"{folder}: holds a PEFT adapter ({ADAPTER_FILE}), which loads another model named "
            "inside it; merge the adapter into the model and save that instead"
        )
    for sub in [folder, *_module_folders(folder)]:
        for path in sorted(sub.glob("*.json")):
            auto_map = _find_auto_map(_read_json(path))
            if auto_map is not None:
                raise UntrustedModelError(
                    f"{folder}: refused, {path.relative_to(folder)} has an auto_map "
                    f"({_describe_entry(auto_map)}), which would run Python code shipped with "
                    "the model; the book never runs a model's own code. Use a model whose "
                    "architecture transformers implements (BERT, for example)"
                )
    for entry in _modules_list(folder):
        kind = entry.get("type") if isinstance(entry, dict) else entry
        if not (isinstance(kind, str) and kind.startswith(MODULE_PACKAGE)):
            raise UntrustedModelError(
                f"{folder}: refused, {MODULES_FILE} names the module class {str(kind)[:200]!r}, "
                f"which is not part of sentence-transformers (it would run code shipped with "
                "the model)"
            )


#: Passed to every transformers loader (configuration, tokenizer, model), so none can
#: import code from a model folder, nor ask whether to.
NO_REMOTE_CODE = {"trust_remote_code": False}


def weights_fingerprint(folder: Path) -> str:
    """Identity of a model's weights: SHA-256 of its safetensors file(s), cached per file state."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ModelUnavailableError(
            f"{folder}: no .safetensors weights. The book loads weights only from safetensors; "
            "convert the checkpoint or pick a model that ships them."
        )
    return "+".join(file_hash(f)[:16] for f in files)


@cache
def _fingerprint_cached(path: str, size: int, mtime: int) -> str:
    return file_fingerprint(Path(path))


def file_hash(path: Path) -> str:
    """A file's SHA-256, computed once per file state (path, size, modification time)."""
    info = path.stat()
    return _fingerprint_cached(str(path), info.st_size, info.st_mtime_ns)


#: Files of a model folder that never change its vectors: the weights (fingerprinted on
#: their own), weight formats the book does not load, documentation, and the book's
#: bookkeeping (a model's completion marker and training log).
NOT_MODEL_FILES = re.compile(
    r"(.*\.(safetensors|bin|pt|pth|ckpt|h5|msgpack|onnx|ot|gguf|md|lock)"
    r"|LICENSE.*|COMPLETE\.json|training_log\.json|\..*)",
    re.IGNORECASE,
)


def model_files(folder: Path) -> list[Path]:
    """The files besides the weights that shape a model's vectors, sorted.

    Every regular file at the top of ``folder`` (configuration, tokenizer, vocabulary,
    ``modules.json``, ``sentence_bert_config.json``...) but those matching
    :data:`NOT_MODEL_FILES`, and every file of its sentence-transformers module folders
    (``1_Pooling/config.json``...).
    """
    folder = Path(folder)
    top = [p for p in folder.iterdir() if not NOT_MODEL_FILES.fullmatch(p.name)]
    inner = [p for sub in _module_folders(folder) for p in sub.rglob("*")]
    return sorted(p for p in top + inner if is_regular_file(p))


def model_files_fingerprint(folder: Path) -> str:
    """Identity of everything but the weights that changes a model's vectors (:func:`model_files`).

    A hash over each file's path in the folder and SHA-256; each file's hash is cached
    per file state, as the weights' is.
    """

    folder = Path(folder)
    h = hashlib.sha256()
    for path in model_files(folder):
        h.update(f"{path.relative_to(folder).as_posix()}\0{file_hash(path)}\n".encode())
    return h.hexdigest()[:16]
