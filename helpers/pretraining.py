"""Pre-train a small BERT with masked-language modelling (MLM), tracking its geometry.

Offline, no BERT checkpoint can be installed, so the book trains its own: the
bert-base-uncased WordPiece vocabulary (shipped with the packaged all-MiniLM-L6-v2), a
4-layer, 256-wide encoder and BERT's objective: 15% of tokens are selected, of which 80%
become ``[MASK]``, 10% a random token and 10% stay unchanged (Devlin et al., 2019). The
loss is computed only at the selected positions, which avoids a vocabulary-sized
projection at every token, the dominant CPU cost otherwise.

Every ``track_every`` steps the held-out split is encoded (mean pooling) and its mean
cosine, PC1 share, IsoScore and k-NN accuracy are recorded, so the book can show the cone
forming. The model is saved (safetensors, with tokenizer and log) under
``results_dir/models/small-bert-<key>``, where the key hashes the training text and every
setting: the same inputs reuse the model, a changed setting trains a new one.

Example
-------
>>> from helpers.config import load_config
>>> path = pretrained_model(load_config())      # doctest: +SKIP
>>> (path / "model.safetensors").exists()        # doctest: +SKIP
True
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .config import Config
from .analysis import corpus_splits
from .corpus import load_corpus
from .embeddings import texts_hash
from .encoders import packaged_model_path, quiet_transformers
from .geometry import isoscore, knn_classification, mean_pairwise_cosine, pc1_share, unit_rows
from .storage import building_folder, is_complete, model_lock, settings_key

log = logging.getLogger(__name__)

TOKENIZER_SOURCE = "all-MiniLM-L6-v2"
LOG_FILE = "training_log.json"


def _training_texts(cfg: Config, train_texts: list[str]) -> list[str]:
    texts = list(train_texts)
    extra = cfg.pretraining.extra_text_dir
    if extra is not None:
        texts += list(load_corpus(extra)["text"])
    return texts


def model_folder(cfg: Config) -> tuple[Path, dict]:
    """Where the small BERT for ``cfg`` lives, and the inputs that define it."""
    splits = corpus_splits(cfg)
    texts = _training_texts(cfg, splits["train"]["text"])
    inputs = {
        "train_texts": texts_hash(texts),
        "heldout_texts": texts_hash(list(splits["test"]["text"])),
        "tokenizer": TOKENIZER_SOURCE,
        "settings": cfg.pretraining.model_dump(mode="json", exclude={"extra_text_dir"}),
    }
    return cfg.models_dir / f"small-bert-{settings_key(inputs)}", inputs


def pretrained_model(cfg: Config, *, progress: bool = False) -> Path:
    """Path of the pre-trained small BERT for ``cfg``, training it first if needed."""
    folder, inputs = model_folder(cfg)
    if is_complete(folder):
        return folder
    with model_lock(folder):
        if is_complete(folder):  # another process finished it while we waited
            return folder
        splits = corpus_splits(cfg)
        with building_folder(folder, inputs) as tmp:
            train_mlm(cfg, splits, tmp, progress=progress)
    return folder


def training_log(folder: Path) -> pd.DataFrame:
    """The geometry-while-training records saved beside a pre-trained model."""
    return pd.DataFrame(json.loads((folder / LOG_FILE).read_text())["records"])


def _blocks(tokenizer, texts: list[str], length: int) -> torch.Tensor:
    """Concatenate the token stream of ``texts`` and cut it into ``[CLS] ... [SEP]`` blocks."""
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    stream = [t for seq in ids for t in seq + [tokenizer.sep_token_id]]
    body = length - 2
    n = len(stream) // body
    if n == 0:
        raise ValueError("not enough training text for one block; add chunks or lower pretraining.max_length")
    arr = torch.tensor(stream[: n * body]).view(n, body)
    cls = torch.full((n, 1), tokenizer.cls_token_id)
    sep = torch.full((n, 1), tokenizer.sep_token_id)
    return torch.cat([cls, arr, sep], dim=1)


def mask_tokens(input_ids: torch.Tensor, tokenizer, probability: float, generator: torch.Generator):
    """BERT's masking: select ``probability`` of non-special tokens; 80% [MASK], 10% random, 10% kept.

    Returns the corrupted ids and the boolean matrix of selected positions.
    """
    special = torch.zeros_like(input_ids, dtype=torch.bool)
    for tid in tokenizer.all_special_ids:
        special |= input_ids == tid
    probs = torch.full(input_ids.shape, probability)
    selected = torch.bernoulli(probs, generator=generator).bool() & ~special
    corrupted = input_ids.clone()
    roll = torch.rand(input_ids.shape, generator=generator)
    to_mask = selected & (roll < 0.8)
    to_random = selected & (roll >= 0.8) & (roll < 0.9)
    corrupted[to_mask] = tokenizer.mask_token_id
    random_ids = torch.randint(len(tokenizer), input_ids.shape, generator=generator)
    corrupted[to_random] = random_ids[to_random]
    return corrupted, selected


@torch.inference_mode()
def mean_pooled(bert, tokenizer, texts: list[str], max_length: int, batch_size: int = 64) -> np.ndarray:
    """Mean-pooled last-layer vectors of ``texts`` (padding excluded)."""
    out = []
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(texts[i : i + batch_size], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        h = bert(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).float()
        out.append(((h * m).sum(1) / m.sum(1)).numpy())
    return np.concatenate(out)


def _track(step: int, loss: float | None, bert, tokenizer, splits, max_length: int) -> dict:
    was_training = bert.training
    bert.eval()
    X_test = unit_rows(mean_pooled(bert, tokenizer, list(splits["test"]["text"]), max_length))
    X_train = unit_rows(mean_pooled(bert, tokenizer, list(splits["train"]["text"]), max_length))
    if was_training:
        bert.train()
    return {
        "step": step,
        "mlm_loss": loss,
        "mean_cosine": mean_pairwise_cosine(X_test),
        "pc1_share": pc1_share(X_test),
        "isoscore": isoscore(X_test),
        "knn_accuracy": knn_classification(X_train, list(splits["train"]["subject"]), X_test, list(splits["test"]["subject"])).accuracy,
    }


def train_mlm(cfg: Config, splits, out_dir: Path, *, progress: bool = False) -> list[dict]:
    """Train the small BERT into ``out_dir`` and return the tracked records."""
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, get_linear_schedule_with_warmup

    quiet_transformers()
    p = cfg.pretraining
    torch.manual_seed(p.seed)
    gen = torch.Generator().manual_seed(p.seed)
    tokenizer = AutoTokenizer.from_pretrained(str(packaged_model_path(TOKENIZER_SOURCE)))
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=p.hidden_size,
        num_hidden_layers=p.num_layers,
        num_attention_heads=p.num_heads,
        intermediate_size=p.intermediate_size,
        max_position_embeddings=max(p.max_length, 512),
    )
    model = BertForMaskedLM(config)
    blocks = _blocks(tokenizer, _training_texts(cfg, splits["train"]["text"]), p.max_length)
    optimizer = torch.optim.AdamW(model.parameters(), lr=p.learning_rate, weight_decay=0.01)
    schedule = get_linear_schedule_with_warmup(optimizer, p.warmup_steps, p.steps)
    records = [_track(0, None, model.bert, tokenizer, splits, p.max_length)]
    model.train()
    recent: list[float] = []
    start = time.perf_counter()
    order = torch.randperm(len(blocks), generator=gen)
    cursor = 0
    for step in tqdm(range(1, p.steps + 1), desc="MLM pre-training", disable=not progress):
        if cursor + p.batch_size > len(order):
            order, cursor = torch.randperm(len(blocks), generator=gen), 0
        batch = blocks[order[cursor : cursor + p.batch_size]]
        cursor += p.batch_size
        corrupted, selected = mask_tokens(batch, tokenizer, p.mask_probability, gen)
        hidden = model.bert(input_ids=corrupted).last_hidden_state
        logits = model.cls(hidden[selected])  # vocabulary projection only where it is scored
        loss = torch.nn.functional.cross_entropy(logits, batch[selected])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        recent.append(loss.item())
        if step % p.track_every == 0 or step == p.steps:
            records.append(_track(step, float(np.mean(recent)), model.bert, tokenizer, splits, p.max_length))
            recent = []
    seconds = time.perf_counter() - start
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    meta = {"records": records, "seconds": seconds, "steps": p.steps, "blocks": len(blocks),
            "parameters": sum(t.numel() for t in model.parameters()), "final_loss": records[-1]["mlm_loss"],
            "perplexity": math.exp(records[-1]["mlm_loss"])}
    (out_dir / LOG_FILE).write_text(json.dumps(meta, indent=2))
    return records
