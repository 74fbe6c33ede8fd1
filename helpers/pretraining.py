"""Pre-train the book's small BERT with masked-language modelling (MLM) and measure it.

No BERT checkpoint can be installed offline, so the book trains its own: BERT's
architecture and objective (Devlin et al., 2019) at a size a laptop trains in minutes.

* **Tokenizer.** ``pretraining.tokenizer: corpus`` keeps the ``vocab_size`` pieces of
  BERT's WordPiece vocabulary that the training text uses most (:func:`corpus_tokenizer`);
  ``bert-base-uncased`` reuses BERT's whole 30,522-piece vocabulary (both ship with the
  packaged all-MiniLM-L6-v2).
* **Objective.** ``mask_probability`` of the non-special tokens are selected; 80% of
  those become ``[MASK]``, 10% a random token, 10% stay (:func:`mask_tokens`). Masks are
  drawn anew for every batch (dynamic masking). The vocabulary projection is computed
  only at the selected positions. BERT selects 15%; selecting more gives more training
  signal per step for the same encoder cost (Wettig et al., 2023), and the held-out
  score always uses BERT's 15%.
* **Blocks.** The token stream is cut into ``[CLS] ... [SEP]`` blocks. As in BERT's own
  recipe, most steps use short blocks (``short_length``) and a ``long_fraction`` of the
  steps use blocks of ``max_length`` tokens, so every position the encoder later reads
  is trained. BERT put its long steps last; in a run this short the learning rate has
  decayed by then, so here they are spread evenly over the run.
* **What it learned.** A unigram model of the training tokens (add-one smoothed) is the
  reference: it predicts every masked token from its frequency alone. On held-out blocks
  with one fixed masking, :class:`HeldOutMLM` scores the model and the reference with the
  same targets (loss in nats, top-1 accuracy).
* **Geometry.** At every checkpoint the held-out chunks are encoded (mean pooling) and
  their mean cosine, PC1 share, IsoScore and k-NN accuracy are recorded.

The model (safetensors, tokenizer, log) is saved under ``results_dir/models/small-bert-<key>``
with its untrained twin in ``initial/``, where the key hashes the text, every setting and
this module's code (:func:`helpers.training.code_version`): an edit of the recipe retrains.

Example
-------
>>> from helpers.config import load_config
>>> from helpers.corpus import corpus_splits
>>> cfg = load_config()                                   # doctest: +SKIP
>>> path = pretrained_model(cfg, corpus_splits(cfg))      # doctest: +SKIP
>>> TrainingLog.load(path).summary["heldout_mlm_loss"]    # doctest: +SKIP
5.9...
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import Config
from .corpus import load_corpus
from .embeddings import texts_hash
from .encoders import packaged_model_path, quiet_transformers
from .geometry import isoscore, knn_classification, mean_pairwise_cosine, pc1_share, unit_rows
from .storage import settings_key
from .training import TrainingLog, build_once, code_version

TOKENIZER_SOURCE = "all-MiniLM-L6-v2"  # its tokenizer is bert-base-uncased's
INITIAL = "initial"  # sub-folder holding the untrained model (step 0)
HELDOUT_SEED = 12345  # the one fixed masking of the held-out blocks
HELDOUT_MASK = 0.15  # BERT's rate, whatever rate training uses
#: A model within this many nats of the unigram reference is "on the plateau" (Chapter 3).
PLATEAU_NATS = 0.1


# --- data ---------------------------------------------------------------------------------


def training_texts(cfg: Config, train_texts: list[str]) -> list[str]:
    """The training split's texts, plus ``pretraining.extra_text_dir`` when set."""
    texts = list(train_texts)
    extra = cfg.pretraining.extra_text_dir
    if extra is not None:
        extra_corpus = load_corpus(
            extra,
            scratch_dir=cfg.paths.results_dir,
            archive_max_bytes=cfg.data.archive_max_bytes,
            archive_max_members=cfg.data.archive_max_members,
        )
        texts += list(extra_corpus["text"])
    return texts


def corpus_tokenizer(texts: list[str], vocab_size: int):
    """BERT's WordPiece tokenizer restricted to the ``vocab_size`` pieces ``texts`` use most.

    ``texts`` are tokenized with bert-base-uncased's vocabulary; the new vocabulary keeps
    the special tokens, every single-character piece (so any word can still be spelled
    out), and the most frequent other pieces (ties: BERT's order). Words whose piece was
    dropped are split into smaller pieces by the same greedy longest-match rule. Unlike a
    trained WordPiece vocabulary (whose trainer breaks ties differently from run to run),
    the result is the same on every run.

    >>> tok = corpus_tokenizer(["the cell divides", "the cell grows"] * 50, 300)
    >>> tok.convert_ids_to_tokens(tok("the cell")["input_ids"])
    ['[CLS]', 'the', 'cell', '[SEP]']
    """
    from collections import Counter

    from tokenizers import BertWordPieceTokenizer
    from transformers import AutoTokenizer, BertTokenizerFast

    bert = AutoTokenizer.from_pretrained(str(packaged_model_path(TOKENIZER_SOURCE)))
    counts = Counter(
        i for ids in bert(list(texts), add_special_tokens=False)["input_ids"] for i in ids
    )
    by_id = sorted(bert.get_vocab().items(), key=lambda item: item[1])
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = [p for p, i in by_id if len(p.removeprefix("##")) == 1 and (counts[i] or p.isascii())]
    others = [(p, i) for p, i in by_id if counts[i] and p not in specials and p not in chars]
    room = max(vocab_size - len(specials) - len(chars), 0)
    kept = sorted(
        sorted(others, key=lambda pi: (-counts[pi[1]], pi[1]))[:room], key=lambda pi: pi[1]
    )
    pieces = specials + chars + [p for p, _ in kept]
    wordpiece = BertWordPieceTokenizer({piece: i for i, piece in enumerate(pieces)}, lowercase=True)
    with tempfile.TemporaryDirectory() as tmp:
        wordpiece.save(f"{tmp}/tokenizer.json")
        return BertTokenizerFast(tokenizer_file=f"{tmp}/tokenizer.json")


def book_tokenizer(cfg: Config, texts: list[str]):
    """The tokenizer ``pretraining.tokenizer`` asks for (see the module docstring)."""
    from transformers import AutoTokenizer

    if cfg.pretraining.tokenizer == "corpus":
        return corpus_tokenizer(texts, cfg.pretraining.vocab_size)
    return AutoTokenizer.from_pretrained(str(packaged_model_path(TOKENIZER_SOURCE)))


def cut_blocks(tokenizer, texts: list[str], length: int) -> torch.Tensor:
    """Concatenate the texts' tokens (a ``[SEP]`` after each) and cut ``[CLS] ... [SEP]`` blocks.

    The incomplete tail is dropped. Shape ``(n_blocks, length)``.
    """
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    stream = [t for seq in ids for t in seq + [tokenizer.sep_token_id]]
    body = length - 2
    n = len(stream) // body
    if n == 0:
        raise ValueError(
            f"not enough text for one block of {length} tokens; "
            "add chunks or lower pretraining.short_length"
        )
    inner = torch.tensor(stream[: n * body]).view(n, body)
    cls = torch.full((n, 1), tokenizer.cls_token_id)
    sep = torch.full((n, 1), tokenizer.sep_token_id)
    return torch.cat([cls, inner, sep], dim=1)


def mask_tokens(input_ids: torch.Tensor, tokenizer, probability: float, generator: torch.Generator):
    """BERT's masking: select ``probability`` of non-special tokens; 80% [MASK], 10% random, 10% kept.

    Returns the corrupted ids and the boolean matrix of selected positions.
    """
    special = torch.isin(input_ids, torch.tensor(tokenizer.all_special_ids))
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


# --- what the model learned -----------------------------------------------------------------


class UnigramReference:
    """Predict every masked token from its training frequency (add-one smoothing).

    >>> ref = UnigramReference(torch.tensor([[5, 5, 6]]), vocab_size=8, special_ids=[0])
    >>> int(ref.log_probs.argmax())
    5
    """

    def __init__(self, blocks: torch.Tensor, vocab_size: int, special_ids: list[int]):
        counts = torch.bincount(blocks.flatten(), minlength=vocab_size).double()
        counts[special_ids] = 0  # special tokens are never targets
        counts += 1
        counts[special_ids] = 0
        self.log_probs = (counts / counts.sum()).log()

    def loss(self, targets: torch.Tensor) -> float:
        return float(-self.log_probs[targets].mean())

    def accuracy(self, targets: torch.Tensor) -> float:
        return float((targets == self.log_probs.argmax()).double().mean())


class BigramReference:
    """Predict a masked token from the token just before it, as the input shows it.

    The counts of (left token, token) pairs in the training blocks give
    P(token | left); it is mixed with the unigram model, ``weight * bigram + (1 - weight)
    * unigram``, so unseen pairs keep some probability. When the left neighbour is itself
    hidden (``[MASK]``), only the unigram model is left. A model that
    uses more than one neighbour of context can beat this reference too. The weight is
    fixed, not tuned on held-out text.

    >>> blocks = torch.tensor([[7, 5, 6, 5, 6, 5, 6]])
    >>> uni = UnigramReference(blocks, vocab_size=8, special_ids=[0])
    >>> ref = BigramReference(blocks, uni, mask_id=0)
    >>> int(ref.log_probs(torch.tensor([5]))[0].argmax())  # after 5 comes 6
    6
    """

    def __init__(
        self, blocks: torch.Tensor, unigram: UnigramReference, mask_id: int, weight: float = 0.7
    ):
        vocab = len(unigram.log_probs)
        pairs = blocks[:, :-1].flatten() * vocab + blocks[:, 1:].flatten()
        self.counts = torch.bincount(pairs, minlength=vocab * vocab).view(vocab, vocab).double()
        self.unigram = unigram.log_probs.exp()
        self.mask_id, self.weight = mask_id, weight

    def log_probs(self, left: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of every token after each ``left`` token (one row each)."""
        rows = self.counts[left]
        totals = rows.sum(1, keepdim=True)
        known = (totals > 0) & (left != self.mask_id).unsqueeze(1)
        bigram = torch.where(known, rows / totals.clamp(min=1), self.unigram)
        return (self.weight * bigram + (1 - self.weight) * self.unigram).log()

    def score(self, inputs: torch.Tensor, selected: torch.Tensor, targets: torch.Tensor):
        """Mean loss (nats) and top-1 accuracy at the ``selected`` positions of ``inputs``."""
        left = inputs[:, :-1][selected[:, 1:]]  # position 0 is [CLS], never selected
        lp = self.log_probs(left)
        loss = float(-lp[torch.arange(len(targets)), targets].mean())
        return loss, float((lp.argmax(1) == targets).double().mean())


#: How a selected held-out position is shown to the model (BERT's 80/10/10 while training).
SHOWN_AS = ("[MASK]", "true token", "random token")
#: Rows of :meth:`HeldOutMLM.score_by_kind`: the training-style input, its parts, all hidden.
TRAINING_STYLE, ALL_HIDDEN = "80/10/10: all", "all as [MASK]"


class HeldOutMLM:
    """Held-out blocks with one fixed set of selected positions: the same targets for every score.

    The book's score (:meth:`score`) shows *every* selected position as ``[MASK]``, so a
    model can only predict it from context. :meth:`score_by_kind` also scores the
    80/10/10 input that training uses, where a tenth of the targets stay visible: there a
    model can copy the answer, which is not learning from context.
    """

    def __init__(self, tokenizer, texts: list[str], length: int, probability: float):
        self._select(cut_blocks(tokenizer, texts, length), tokenizer, probability, HELDOUT_SEED)

    @classmethod
    def from_blocks(cls, blocks: torch.Tensor, tokenizer, probability: float, seed: int):
        """Held-out scoring on ready-made ``blocks`` (with a masking of their own ``seed``)."""
        held = cls.__new__(cls)
        held._select(blocks, tokenizer, probability, seed)
        return held

    def _select(self, blocks: torch.Tensor, tokenizer, probability: float, seed: int) -> None:
        self.blocks = blocks
        gen = torch.Generator().manual_seed(seed)
        self.corrupted, self.selected = mask_tokens(self.blocks, tokenizer, probability, gen)
        self.targets = self.blocks[self.selected]
        self.masked = self.blocks.clone()
        self.masked[self.selected] = tokenizer.mask_token_id
        # What the 80/10/10 input shows at each target (index into SHOWN_AS).
        shown = self.corrupted[self.selected]
        self.kind = torch.where(
            shown == tokenizer.mask_token_id, 0, torch.where(shown == self.targets, 1, 2)
        )

    @torch.inference_mode()
    def _target_scores(self, mlm, inputs: torch.Tensor, batch_size: int = 32):
        """Per-target loss (nats) and whether the top-1 guess is right, for one input."""
        losses, hits = [], []
        for i in range(0, len(self.blocks), batch_size):
            sel = self.selected[i : i + batch_size]
            hidden = mlm.bert(input_ids=inputs[i : i + batch_size]).last_hidden_state
            logits = mlm.cls(hidden[sel]).float()
            target = self.blocks[i : i + batch_size][sel]
            losses.append(torch.nn.functional.cross_entropy(logits, target, reduction="none"))
            hits.append(logits.argmax(-1) == target)
        return torch.cat(losses), torch.cat(hits)

    def score(self, mlm, batch_size: int = 32) -> tuple[float, float]:
        """Mean loss (nats) and top-1 accuracy of ``mlm`` (a ``BertForMaskedLM``), all masked."""
        loss, hit = self._target_scores(mlm, self.masked, batch_size)
        return float(loss.mean()), float(hit.double().mean())

    def score_by_kind(self, mlm, unigram: UnigramReference) -> list[dict]:
        """Loss and accuracy by how each target is shown: the whole 80/10/10 input, each
        part of it, and every target as ``[MASK]`` (the book's score); beside the unigram's.
        """
        mixed = self._target_scores(mlm, self.corrupted)
        rows = [(TRAINING_STYLE, torch.ones_like(self.kind).bool(), mixed)]
        rows += [(f"80/10/10: {name}", self.kind == k, mixed) for k, name in enumerate(SHOWN_AS)]
        all_masked = self._target_scores(mlm, self.masked)
        rows.append((ALL_HIDDEN, torch.ones_like(self.kind).bool(), all_masked))
        out = []
        for label, keep, (loss, hit) in rows:
            targets = self.targets[keep]
            out.append(
                {
                    "positions": label,
                    "targets": int(keep.sum()),
                    "model_loss": float(loss[keep].mean()),
                    "unigram_loss": unigram.loss(targets),
                    "model_accuracy": float(hit[keep].double().mean()),
                    "unigram_accuracy": unigram.accuracy(targets),
                }
            )
        return out


@torch.inference_mode()
def pooled_vectors(
    bert, tokenizer, texts: list[str], max_length: int, pooling: str = "mean", batch_size: int = 64
) -> np.ndarray:
    """Last-layer sentence vectors of ``texts``: the mean over real tokens, or ``[CLS]``'s."""
    out = []
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(
            texts[i : i + batch_size],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        enc.pop("token_type_ids", None)  # all zeros anyway; keeps the call model-agnostic
        h = bert(**enc).last_hidden_state.float()
        if pooling == "cls":
            out.append(h[:, 0].numpy())
            continue
        m = enc["attention_mask"].unsqueeze(-1).float()
        out.append(((h * m).sum(1) / m.sum(1)).numpy())
    return np.concatenate(out)


def geometry_checkpoint(bert, tokenizer, splits, max_length: int) -> dict:
    """Mean cosine, PC1 share, IsoScore (held out) and k-NN accuracy of mean-pooled vectors."""
    test = unit_rows(pooled_vectors(bert, tokenizer, list(splits["test"]["text"]), max_length))
    train = unit_rows(pooled_vectors(bert, tokenizer, list(splits["train"]["text"]), max_length))
    knn = knn_classification(
        train, list(splits["train"]["subject"]), test, list(splits["test"]["subject"])
    )
    return {
        "mean_cosine": mean_pairwise_cosine(test),
        "pc1_share": pc1_share(test),
        "isoscore": isoscore(test),
        "knn_accuracy": knn.accuracy,
    }


def positions_table(cfg: Config, splits, folder: Path) -> list[dict]:
    """Score the saved small BERT in ``folder`` by how each held-out target is shown.

    Rebuilds what training used (the tokenizer saved with the model, the training blocks for
    the unigram reference, the held-out blocks with their one fixed masking) and returns
    :meth:`HeldOutMLM.score_by_kind`'s rows.
    """
    from transformers import AutoTokenizer, BertForMaskedLM

    p = cfg.pretraining
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = BertForMaskedLM.from_pretrained(str(folder)).eval()
    short_length = min(p.short_length, p.max_length)
    texts = training_texts(cfg, splits["train"]["text"])
    unigram = UnigramReference(
        cut_blocks(tokenizer, texts, short_length), len(tokenizer), tokenizer.all_special_ids
    )
    heldout = HeldOutMLM(tokenizer, list(splits["test"]["text"]), short_length, HELDOUT_MASK)
    return heldout.score_by_kind(model, unigram)


# --- training -------------------------------------------------------------------------------


def use_bf16(precision: str) -> bool:
    """bf16 autocast when asked, or with ``auto`` on CPUs with native bf16 instructions."""
    if precision == "auto":
        return bool(
            torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
        )
    return precision == "bf16"


def pretraining_inputs(cfg: Config, splits) -> dict:
    """Everything that defines the small BERT (hashed into its folder name)."""
    return {
        "train_texts": texts_hash(training_texts(cfg, splits["train"]["text"])),
        "heldout_texts": texts_hash(list(splits["test"]["text"])),
        "tokenizer_source": TOKENIZER_SOURCE,
        "code": CODE_VERSION,  # an edit of this module retrains
        "settings": cfg.pretraining.model_dump(mode="json", exclude={"extra_text_dir"}),
        "bf16": use_bf16(cfg.pretraining.precision),
    }


def model_folder(cfg: Config, splits) -> Path:
    """Where the small BERT for ``cfg`` and ``splits`` lives."""
    key = settings_key(pretraining_inputs(cfg, splits))
    return cfg.models_dir / f"small-bert-{key}"


def pretrained_model(cfg: Config, splits, *, progress: bool = False) -> Path:
    """Path of the pre-trained small BERT, training it first if needed (see :func:`build_once`)."""
    return build_once(
        model_folder(cfg, splits),
        pretraining_inputs(cfg, splits),
        lambda out: train_mlm(cfg, splits, out, progress=progress),
    )


def _bert_config(cfg: Config, vocab_size: int):
    from transformers import BertConfig

    p = cfg.pretraining
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=p.hidden_size,
        num_hidden_layers=p.num_layers,
        num_attention_heads=p.num_heads,
        intermediate_size=p.intermediate_size,
        max_position_embeddings=max(p.max_length, 512),
        hidden_dropout_prob=p.dropout,
        attention_probs_dropout_prob=p.dropout,
    )


def _save(model, tokenizer, folder: Path) -> None:
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def mlm_step(
    model, batch: torch.Tensor, tokenizer, rate: float, gen, autocast=nullcontext
) -> float:
    """One masked-language-modelling step on ``batch``: mask, predict, backpropagate.

    The gradients are left in the model for the optimiser; returns the loss (nats).
    """
    corrupted, selected = mask_tokens(batch, tokenizer, rate, gen)
    with autocast():
        hidden = model.bert(input_ids=corrupted).last_hidden_state
        logits = model.cls(hidden[selected])  # the vocabulary projection only where scored
    loss = torch.nn.functional.cross_entropy(logits.float(), batch[selected])
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    return loss.item()


def train_mlm(cfg: Config, splits, out_dir: Path, *, progress: bool = False) -> TrainingLog:
    """Train the small BERT into ``out_dir`` (its untrained twin into ``out_dir/initial``)."""
    from transformers import BertForMaskedLM, get_linear_schedule_with_warmup

    quiet_transformers()
    p = cfg.pretraining
    torch.manual_seed(p.seed)
    gen = torch.Generator().manual_seed(p.seed)
    texts = training_texts(cfg, splits["train"]["text"])
    tokenizer = book_tokenizer(cfg, texts)
    model = BertForMaskedLM(_bert_config(cfg, len(tokenizer)))
    _save(model, tokenizer, out_dir / INITIAL)
    short_length = min(p.short_length, p.max_length)
    short = cut_blocks(tokenizer, texts, short_length)
    long = cut_blocks(tokenizer, texts, p.max_length)
    unigram = UnigramReference(short, len(tokenizer), tokenizer.all_special_ids)
    heldout = HeldOutMLM(tokenizer, list(splits["test"]["text"]), short_length, HELDOUT_MASK)
    bigram = BigramReference(short, unigram, tokenizer.mask_token_id)
    bigram_loss, bigram_accuracy = bigram.score(heldout.masked, heldout.selected, heldout.targets)
    ref = {
        "unigram_heldout_loss": unigram.loss(heldout.targets),
        "unigram_masked_accuracy": unigram.accuracy(heldout.targets),
        "bigram_heldout_loss": bigram_loss,
        "bigram_masked_accuracy": bigram_accuracy,
    }
    bf16 = use_bf16(p.precision)
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else nullcontext
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=p.learning_rate, weight_decay=p.weight_decay, betas=(0.9, 0.98)
    )
    schedule = get_linear_schedule_with_warmup(optimizer, p.warmup_steps, p.steps)
    # Long blocks are spread over the whole run (not left to its end, where the decayed
    # learning rate would leave positions past short_length nearly untrained).
    long_every = round(1 / p.long_fraction) if p.long_fraction > 0 else 0
    long_batch = max(2, p.batch_size * short_length // p.max_length)  # same tokens per step

    def checkpoint(step: int, train_loss: float | None) -> dict:
        model.eval()
        loss, acc = heldout.score(model)  # in fp32, as anyone re-scoring the saved model would
        with autocast():
            geometry = geometry_checkpoint(model.bert, tokenizer, splits, p.max_length)
        model.train()
        return {
            "step": step,
            "train_loss": train_loss,
            "heldout_mlm_loss": loss,
            "masked_accuracy": acc,
            **ref,
            **geometry,
        }

    records = [checkpoint(0, None)]
    recent: list[float] = []
    tokens = 0
    start = time.perf_counter()
    for step in tqdm(range(1, p.steps + 1), desc="MLM pre-training", disable=not progress):
        is_long = long_every and step % long_every == 0
        blocks, size = (long, long_batch) if is_long else (short, p.batch_size)
        batch = blocks[torch.randint(len(blocks), (size,), generator=gen)]
        loss = mlm_step(model, batch, tokenizer, p.mask_probability, gen, autocast)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        recent.append(loss)
        tokens += batch.numel()
        if step % p.track_every == 0 or step == p.steps:
            records.append(checkpoint(step, float(np.mean(recent))))
            recent = []
    seconds = time.perf_counter() - start
    _save(model, tokenizer, out_dir)
    last = records[-1]
    # Positions past short_length, scored the same way on max_length blocks (when the
    # held-out text fills one).
    long_loss = long_accuracy = long_unigram = None
    if p.max_length > short_length:
        try:
            long_heldout = HeldOutMLM(
                tokenizer, list(splits["test"]["text"]), p.max_length, HELDOUT_MASK
            )
        except ValueError:  # too little held-out text for one long block
            long_heldout = None
        if long_heldout is not None:
            model.eval()
            long_loss, long_accuracy = long_heldout.score(model)
            long_unigram = unigram.loss(long_heldout.targets)
    summary = {
        "steps": p.steps,
        "seconds": seconds,
        "tokens_per_second": tokens / seconds,
        "vocab_size": len(tokenizer),
        "train_tokens": int(short.numel()),
        "heldout_targets": int(len(heldout.targets)),
        "bf16": bf16,
        **{k: last[k] for k in ("heldout_mlm_loss", "masked_accuracy")},
        **ref,
        "heldout_long_mlm_loss": long_loss,
        "long_masked_accuracy": long_accuracy,
        "unigram_long_heldout_loss": long_unigram,
        "heldout_perplexity": math.exp(last["heldout_mlm_loss"]),
        "unigram_perplexity": math.exp(ref["unigram_heldout_loss"]),
    }
    parameters = sum(t.numel() for t in model.parameters())
    return TrainingLog(records=records, seconds=seconds, parameters=parameters, summary=summary)


#: This module's code as it was imported (read once, so a later edit of the file on disk
#: cannot give a model trained by the old code the new code's key).
CODE_VERSION = code_version(sys.modules[__name__])
