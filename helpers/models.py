"""Model roles: map ``baseline``, ``contrastive``, ``finetune_base``, ``finetuned`` to encoders.

A role names a model in ``config.yaml`` (``models:``). Most roles are a packaged model, a
local folder or a hub id, loaded by :mod:`helpers.encoders`. Two are trained by the book
on first use and reused afterwards: ``book:small-bert`` (:mod:`helpers.pretraining`) and
the ``finetuned`` role, ``finetune_base`` fine-tuned with the first of
``finetuning.losses`` on ``data.train_subjects`` (:mod:`helpers.finetuning`).

Example
-------
>>> from helpers.config import load_config
>>> from helpers.corpus import corpus_splits
>>> cfg = load_config()                                           # doctest: +SKIP
>>> enc = role_encoder(cfg, "contrastive", corpus_splits(cfg))    # doctest: +SKIP
>>> enc.pooling
'mean'
"""

from __future__ import annotations

from pathlib import Path

from .config import Config, ConfigError, ModelSpec
from .corpus import restrict_subjects
from .encoders import Encoder, availability, load_encoder, resolve_model_path
from .finetuning import finetuned_model
from .names import ALL_ROLES, FINETUNED, ROLES, SMALL_BERT
from .pretraining import model_folder as small_bert_folder
from .pretraining import pretrained_model
from .storage import is_complete


def role_spec(cfg: Config, role: str) -> ModelSpec:
    """The name and pooling of a role; ``finetuned`` pools like ``finetune_base``."""
    if role == FINETUNED:
        return ModelSpec(name=FINETUNED, pooling=cfg.models.finetune_base.pooling)
    if role not in ROLES:
        raise ConfigError(f"unknown model role {role!r}; roles are {', '.join(ALL_ROLES)}")
    return getattr(cfg.models, role)


def finetune_splits(cfg: Config, splits):
    """``splits`` restricted to ``data.train_subjects`` (checked against the data)."""
    keep = cfg.data.train_subjects
    present = set(splits["train"]["subject"])
    missing = sorted(set(keep or ()) - present)
    if missing:
        raise ConfigError(
            f"{cfg.source}: key 'data.train_subjects' names {missing}, which the corpus at "
            f"{cfg.paths.data_dir} does not hold (it has {sorted(present)})."
        )
    return restrict_subjects(splits, keep)


def _encoder(cfg: Config, spec: ModelSpec, path: Path | None = None, **kw) -> Encoder:
    return load_encoder(
        spec.name,
        path=path,
        pooling=spec.pooling,
        normalize=cfg.encoding.normalize,
        max_length=kw.get("max_length", cfg.encoding.max_length),
        precision=kw.get("precision", cfg.encoding.precision),
    )


def model_path(
    cfg: Config,
    role: str,
    splits,
    *,
    loss: str | None = None,
    progress: bool = False,
    settings=None,
) -> Path:
    """The folder of a role's model, training it first when the book trains it.

    ``loss`` and ``settings`` (a :class:`helpers.config.Finetuning`) select another
    fine-tuned variant than the configured one.
    """
    spec = role_spec(cfg, role)
    if spec.name == SMALL_BERT:
        return pretrained_model(cfg, splits, progress=progress)
    if role == FINETUNED:
        settings = settings or cfg.finetuning
        base = base_encoder(cfg, splits, max_length=settings.max_length)
        return finetuned_model(
            settings,
            base,
            finetune_splits(cfg, splits),
            loss or settings.losses[0],
            cfg.models_dir,
            progress=progress,
        )
    return resolve_model_path(spec.name)


def base_encoder(cfg: Config, splits, *, max_length: int | None = None) -> Encoder:
    """The ``finetune_base`` encoder (reading at most ``max_length`` tokens)."""
    spec = role_spec(cfg, "finetune_base")
    path = model_path(cfg, "finetune_base", splits)
    # Fine-tuning trains in fp32 from the weights: the encoding precision is not part of its key.
    return _encoder(
        cfg, spec, path, max_length=max_length or cfg.encoding.max_length, precision="fp32"
    )


def role_encoder(cfg: Config, role: str, splits, *, progress: bool = False, **variant) -> Encoder:
    """A ready :class:`Encoder` for ``role`` (see :func:`model_path` for ``variant``)."""
    spec = role_spec(cfg, role)
    return _encoder(cfg, spec, model_path(cfg, role, splits, progress=progress, **variant))


def describe_role(cfg: Config, role: str, splits) -> dict[str, str]:
    """What a role resolves to and whether it is available offline, without training."""
    spec = role_spec(cfg, role)
    if spec.name == SMALL_BERT:
        trained = is_complete(small_bert_folder(cfg, splits))
        status = "offline: trained" if trained else "offline: trained on first use"
    elif role == FINETUNED:
        status = "offline: fine-tuned on first use (reused once trained)"
    else:
        status = availability(spec.name)
    return {"role": role, "model": spec.name, "pooling": spec.pooling, "status": status}
