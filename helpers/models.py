"""Model roles: map ``baseline``, ``contrastive``, ``finetune_base``, ``finetuned`` to encoders.

A role names a model in ``config.yaml`` (``models:``): a packaged model, a local folder or
a hub id, loaded by :mod:`helpers.encoders`, or one of the models the book trains itself,
``book:small-bert`` (:mod:`helpers.pretraining`) and the ``finetuned`` role,
``finetune_base`` fine-tuned with the first of ``finetuning.losses`` on
``data.train_subjects`` (:mod:`helpers.finetuning`).

**Resolving never trains.** :func:`model_path` and :func:`role_encoder` find a trained
model or stop with :class:`ModelNotTrainedError`, which names the command that builds it.
Training happens in one place, :func:`train_models` (``python -m helpers train``, the
``models`` step of ``make book``), over one list of what the book trains,
:func:`book_models`.

Example
-------
>>> from helpers.config import load_config
>>> from helpers.corpus import corpus_splits
>>> cfg = load_config()                                                 # doctest: +SKIP
>>> role_encoder(cfg, "contrastive", corpus_splits(cfg)).pooling       # doctest: +SKIP
'mean'
>>> [m.label for m in book_models(cfg)][:2]                             # doctest: +SKIP
['small BERT', 'finetuned (batch_all_triplet)']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .config import Config, ConfigError, Finetuning, ModelSpec
from .corpus import restrict_subjects
from .encoders import Encoder, ModelUnavailableError, availability, load_encoder, resolve_model_path
from .finetuning import finetuned_folder, finetuned_model
from .names import (
    ALL_ROLES,
    FINETUNED,
    LOSSES,
    ROLES,
    SMALL_BERT,
    TEMPERATURE_EPOCHS,
    TEMPERATURE_SCALES,
)
from .pretraining import model_folder as small_bert_folder
from .pretraining import pretrained_model
from .storage import is_complete

#: The command that trains every model of :func:`book_models` (said in every "not trained").
TRAIN_COMMAND = "python -m helpers train"


class ModelNotTrainedError(ModelUnavailableError):
    """A model the book trains has not been trained for this configuration yet."""


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


def finetune_losses(cfg: Config) -> list[str]:
    """Every loss Chapter 5 compares: the configured ones first, then the rest of ``LOSSES``.

    >>> from helpers.config import Config
    >>> finetune_losses(Config.model_validate({"paths": {"data_dir": "."}}))
    ['batch_all_triplet', 'multiple_negatives']
    """
    return [*cfg.finetuning.losses, *(loss for loss in LOSSES if loss not in cfg.finetuning.losses)]


def temperature_settings(cfg: Config, scale: float) -> Finetuning:
    """Chapter 5's temperature study: ``multiple_negatives`` at ``scale`` for a short run."""
    return cfg.finetuning.model_copy(update={"scale": scale, "epochs": TEMPERATURE_EPOCHS})


@dataclass(frozen=True)
class BookModel:
    """One model the book trains: the small BERT (``loss`` is None) or a fine-tune."""

    label: str
    loss: str | None = None
    settings: Finetuning | None = None

    def variant(self) -> dict:
        """The keywords that select this model in :func:`model_path` and :func:`role_encoder`."""
        return {"loss": self.loss, "settings": self.settings}


def book_models(cfg: Config) -> list[BookModel]:
    """The one list of the models the book trains, in training order.

    The small BERT always (Chapter 3 watches it train, whichever model ``baseline`` names),
    then ``finetune_base`` fine-tuned with each loss of :func:`finetune_losses`, then the
    temperature study's runs. ``python -m helpers train`` trains exactly these.
    """
    models = [BookModel("small BERT")]
    models += [BookModel(f"{FINETUNED} ({loss})", loss) for loss in finetune_losses(cfg)]
    models += [
        BookModel(
            f"{FINETUNED} (multiple_negatives, scale {scale:g})",
            "multiple_negatives",
            temperature_settings(cfg, scale),
        )
        for scale in TEMPERATURE_SCALES
    ]
    return models


def _not_trained(what: str, folder: Path) -> ModelNotTrainedError:
    return ModelNotTrainedError(
        f"{what} is not trained for this configuration yet (it would be {folder}). "
        f"Train the book's models first: {TRAIN_COMMAND} (or make models); "
        "loading a model never trains one."
    )


def small_bert_path(cfg: Config, splits) -> Path:
    """The folder of the trained small BERT for ``cfg`` and ``splits`` (never trains)."""
    folder = small_bert_folder(cfg, splits)
    if not is_complete(folder):
        raise _not_trained("the small BERT (book:small-bert)", folder)
    return folder


def model_path(
    cfg: Config,
    role: str,
    splits,
    *,
    loss: str | None = None,
    settings: Finetuning | None = None,
) -> Path:
    """The folder of a role's model; a model the book trains must have been trained.

    ``loss`` and ``settings`` select another fine-tuned variant than the configured one
    (see :class:`BookModel`). Raises :class:`ModelNotTrainedError` for a missing one.
    """
    spec = role_spec(cfg, role)
    if spec.name == SMALL_BERT:
        return small_bert_path(cfg, splits)
    if role == FINETUNED:
        folder = _finetuned_folder(cfg, splits, loss, settings)
        if not is_complete(folder):
            raise _not_trained(f"the fine-tuned model ({loss or cfg.finetuning.losses[0]})", folder)
        return folder
    return resolve_model_path(spec.name)


def _finetuned_folder(cfg: Config, splits, loss: str | None, settings: Finetuning | None) -> Path:
    settings = settings or cfg.finetuning
    base = base_encoder(cfg, splits, max_length=settings.max_length)
    loss = loss or settings.losses[0]
    return finetuned_folder(settings, base, finetune_splits(cfg, splits), loss, cfg.models_dir)


def _encoder(cfg: Config, spec: ModelSpec, path: Path | None = None, **kw) -> Encoder:
    return load_encoder(
        spec.name,
        path=path,
        pooling=spec.pooling,
        normalize=cfg.encoding.normalize,
        max_length=kw.get("max_length", cfg.encoding.max_length),
        precision=kw.get("precision", cfg.encoding.precision),
    )


def base_encoder(cfg: Config, splits, *, max_length: int | None = None) -> Encoder:
    """The ``finetune_base`` encoder (reading at most ``max_length`` tokens)."""
    spec = role_spec(cfg, "finetune_base")
    path = model_path(cfg, "finetune_base", splits)
    # Fine-tuning trains in fp32 from the weights: the encoding precision is not part of its key.
    return _encoder(
        cfg, spec, path, max_length=max_length or cfg.encoding.max_length, precision="fp32"
    )


def role_encoder(cfg: Config, role: str, splits, **variant) -> Encoder:
    """A ready :class:`Encoder` for ``role`` (see :func:`model_path` for ``variant``)."""
    spec = role_spec(cfg, role)
    return _encoder(cfg, spec, model_path(cfg, role, splits, **variant))


def train_models(
    cfg: Config,
    splits,
    *,
    progress: bool = False,
    report: Callable[[BookModel, Path], None] | None = None,
) -> dict[str, Path]:
    """Train (or reuse) every model of :func:`book_models`; their folders by label.

    A model already trained for the same data, settings and code is reused, so a second
    call trains nothing.
    """
    paths = {}
    for model in book_models(cfg):
        if model.loss is None:
            path = pretrained_model(cfg, splits, progress=progress)
        else:
            settings = model.settings or cfg.finetuning
            # finetune_base may itself be the small BERT, trained just above.
            base = base_encoder(cfg, splits, max_length=settings.max_length)
            train = finetune_splits(cfg, splits)
            path = finetuned_model(
                settings, base, train, model.loss, cfg.models_dir, progress=progress
            )
        paths[model.label] = path
        if report is not None:
            report(model, path)
    return paths


def describe_role(cfg: Config, role: str, splits) -> dict[str, str]:
    """What a role resolves to and whether it is available offline, without training."""
    spec = role_spec(cfg, role)
    if spec.name == SMALL_BERT or role == FINETUNED:
        try:
            status = f"offline: trained ({model_path(cfg, role, splits).name})"
        except ModelNotTrainedError:
            status = f"not trained yet: {TRAIN_COMMAND}"
    else:
        status = availability(spec.name)
    return {"role": role, "model": spec.name, "pooling": spec.pooling, "status": status}
