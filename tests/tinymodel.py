"""A tiny BERT model folder (random weights, the packaged model's uncased tokenizer), made fast.

``tiny_model(folder)`` writes a folder that ``helpers.encoders.load_encoder`` accepts:
``config.json``, ``model.safetensors`` (one layer, hidden size 16) and the tokenizer files
of the packaged all-MiniLM-L6-v2. Tests copy it and change one file to plant a hostile or
broken model; ``remote_code_model`` plants one whose ``auto_map`` points at a ``.py``
that touches a marker file when imported.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

TOKENIZER_FILES = (
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


def tiny_model(folder: Path) -> Path:
    """Write a one-layer BERT (hidden size 16, random weights, fixed seed) into ``folder``."""
    import torch
    from transformers import BertConfig, BertModel

    from helpers.encoders import packaged_model_path

    source = packaged_model_path("all-MiniLM-L6-v2")
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(str(folder))
    for name in TOKENIZER_FILES:
        shutil.copy(source / name, folder / name)
    return folder


def edit_json(path: Path, **changes) -> None:
    """Set keys of the JSON object in ``path``."""
    value = json.loads(path.read_text())
    value.update(changes)
    path.write_text(json.dumps(value))


def remote_code_model(source: Path, folder: Path, marker: Path, where: str = "config.json") -> Path:
    """A copy of ``source`` whose ``where`` has an ``auto_map`` to ``evil.py``, which touches ``marker``.

    The model type is one transformers does not know, so only the folder's code could
    load it (transformers would ask whether to run it).
    """
    shutil.copytree(source, folder)
    (folder / "evil.py").write_text(
        "import pathlib\n"
        f"pathlib.Path({str(marker)!r}).touch()\n"
        "from transformers import BertConfig, BertModel, BertTokenizerFast\n"
        "class EvilConfig(BertConfig):\n    model_type = 'evilbert'\n"
        "class EvilModel(BertModel):\n    config_class = EvilConfig\n"
        "class EvilTokenizer(BertTokenizerFast):\n    pass\n"
    )
    if where == "config.json":
        edit_json(
            folder / "config.json",
            model_type="evilbert",
            auto_map={"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"},
        )
    else:
        edit_json(folder / where, auto_map={"AutoTokenizer": ["evil.EvilTokenizer", None]})
    return folder
