"""Model roles: map ``baseline``, ``contrastive``, ``finetune_base``, ``finetuned`` to encoders.

A role names a model in ``config.yaml`` (``models:``): a packaged model, a local folder or
a hub id, loaded by :mod:`helpers.encoders`, or ``book:small-bert``, which the book
pre-trains itself (:mod:`helpers.pretraining`). Three more roles are trained from those
(:mod:`helpers.finetuning`; ``DERIVED_ROLES`` in :mod:`helpers.names`):

* ``finetuned``: ``finetune_base`` fine-tuned with the first of ``finetuning.losses`` on
  ``data.train_subjects``;
* ``baseline-finetuned``: ``baseline`` fine-tuned the same way;
* ``baseline-simcse``: ``baseline`` continued with unsupervised SimCSE on the same training
  chunks (their labels unused), so that MLM + SimCSE and MLM + fine-tune differ only in
  their objective.

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
['small BERT', 'baseline-simcse']
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
    BASELINE_FINETUNED,
    BASELINE_SIMCSE,
    DERIVED_ROLES,
    FINETUNED,
    LOSSES,
    ROLES,
    SIMCSE,
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
    """The name and pooling of a role; a trained role pools like the role it starts from."""
    if role in DERIVED_ROLES:
        return ModelSpec(name=role, pooling=role_spec(cfg, DERIVED_ROLES[role]).pooling)
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
    """Every loss Chapter 6 compares: the configured ones first, then the rest of ``LOSSES``.

    >>> from helpers.config import Config
    >>> finetune_losses(Config.model_validate({"paths": {"data_dir": "."}}))
    ['batch_all_triplet', 'multiple_negatives', 'supervised_contrastive']
    """
    return [*cfg.finetuning.losses, *(loss for loss in LOSSES if loss not in cfg.finetuning.losses)]


def finetune_seeds(cfg: Config) -> list[int]:
    """The seeds of the book's fine-tune: ``finetuning.seed`` first, then ``extra_seeds``.

    >>> finetune_seeds(Config.model_validate({"paths": {"data_dir": "."}}))
    [13, 14, 15]
    """
    f = cfg.finetuning
    return [f.seed, *(s for s in f.extra_seeds if s != f.seed)]


def seed_settings(cfg: Config, seed: int) -> Finetuning:
    """The configured fine-tune with another ``seed`` (data order, dropout, pairs)."""
    return cfg.finetuning.model_copy(update={"seed": seed})


def temperature_settings(cfg: Config, scale: float, seed: int | None = None) -> Finetuning:
    """The temperature study: ``multiple_negatives`` at ``scale``, one fixed short run.

    A fixed budget (no plateau rule), so the two temperatures train the same steps.
    """
    update = {"scale": scale, "epochs": TEMPERATURE_EPOCHS, "stop_at_plateau": False}
    if seed is not None:
        update["seed"] = seed
    return cfg.finetuning.model_copy(update=update)


@dataclass(frozen=True)
class BookModel:
    """One model the book trains: the small BERT (``role`` is None) or a trained role.

    ``loss`` and ``settings`` select a variant of the role other than the configured one.
    """

    label: str
    role: str | None = None
    loss: str | None = None
    settings: Finetuning | None = None

    def variant(self) -> dict:
        """The keywords that select this model in :func:`model_path` and :func:`role_encoder`."""
        return {"loss": self.loss, "settings": self.settings}


def book_models(cfg: Config) -> list[BookModel]:
    """The one list of the models the book trains, in training order.

    The small BERT always (Chapter 3 watches it train, whichever model ``baseline`` names);
    ``baseline`` continued with SimCSE and with the supervised fine-tune (the same model
    under three objectives); ``finetune_base`` fine-tuned with each loss of
    :func:`finetune_losses`; the first loss again with each of ``finetuning.extra_seeds``;
    then the temperature study's runs, with every seed. ``python -m helpers
    train`` trains exactly these.
    """
    models = [BookModel("small BERT")]
    models += [BookModel(role, role) for role in (BASELINE_SIMCSE, BASELINE_FINETUNED)]
    models += [BookModel(f"{FINETUNED} ({loss})", FINETUNED, loss) for loss in finetune_losses(cfg)]
    primary, seeds = cfg.finetuning.losses[0], finetune_seeds(cfg)
    models += [
        BookModel(
            f"{FINETUNED} ({primary}, seed {seed})", FINETUNED, primary, seed_settings(cfg, seed)
        )
        for seed in seeds[1:]
    ]
    models += [
        BookModel(
            f"{FINETUNED} (multiple_negatives, scale {scale:g}, seed {seed})",
            FINETUNED,
            "multiple_negatives",
            temperature_settings(cfg, scale, seed),
        )
        for scale in TEMPERATURE_SCALES
        for seed in seeds
    ]
    return models


@dataclass(frozen=True)
class _Plan:
    """Everything that defines one trained role's model: settings, start, data, loss."""

    settings: Finetuning
    base: Encoder
    splits: object
    loss: str

    def folder(self, models_dir: Path) -> Path:
        return finetuned_folder(self.settings, self.base, self.splits, self.loss, models_dir)


def _plan(cfg: Config, role: str, splits, loss: str | None, settings: Finetuning | None) -> _Plan:
    if settings is None:
        settings = cfg.finetuning
        if DERIVED_ROLES[role] == "baseline":
            # A fixed budget, the same for each objective (Chapter 7 compares them).
            update = {**cfg.continued.model_dump(), "stop_at_plateau": False}
            settings = settings.model_copy(update=update)
    if loss is None:
        loss = SIMCSE if role == BASELINE_SIMCSE else settings.losses[0]
    base = base_encoder(cfg, splits, role=DERIVED_ROLES[role], max_length=settings.max_length)
    # Every run trains on the training chunks of data.train_subjects (SimCSE ignores their
    # labels), so the continued runs differ only in their objective.
    return _Plan(settings, base, finetune_splits(cfg, splits), loss)


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
    if role in DERIVED_ROLES:
        plan = _plan(cfg, role, splits, loss, settings)
        folder = plan.folder(cfg.models_dir)
        if not is_complete(folder):
            raise _not_trained(f"the {role} model ({plan.loss})", folder)
        return folder
    return resolve_model_path(spec.name)


def _encoder(cfg: Config, spec: ModelSpec, path: Path | None = None, **kw) -> Encoder:
    return load_encoder(
        spec.name,
        path=path,
        pooling=spec.pooling,
        normalize=cfg.encoding.normalize,
        max_length=kw.get("max_length", cfg.encoding.max_length),
        precision=kw.get("precision", cfg.encoding.precision),
    )


def base_encoder(
    cfg: Config, splits, *, role: str = "finetune_base", max_length: int | None = None
) -> Encoder:
    """The encoder a trained role starts from (``finetune_base`` or ``baseline``).

    It reads at most ``max_length`` tokens and computes in fp32, as training does (the
    encoding precision is not part of a trained model's key).
    """
    spec = role_spec(cfg, role)
    path = model_path(cfg, role, splits)
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
        if model.role is None:
            path = pretrained_model(cfg, splits, progress=progress)
        else:
            # A role's base may itself be the small BERT, trained just above.
            plan = _plan(cfg, model.role, splits, model.loss, model.settings)
            path = finetuned_model(
                plan.settings, plan.base, plan.splits, plan.loss, cfg.models_dir, progress=progress
            )
        paths[model.label] = path
        if report is not None:
            report(model, path)
    return paths


def describe_role(cfg: Config, role: str, splits) -> dict[str, str]:
    """What a role resolves to and whether it is available offline, without training."""
    spec = role_spec(cfg, role)
    if spec.name == SMALL_BERT or role in DERIVED_ROLES:
        try:
            status = f"offline: trained ({model_path(cfg, role, splits).name})"
        except ModelNotTrainedError:
            status = f"not trained yet: {TRAIN_COMMAND}"
    else:
        status = availability(spec.name)
    return {"role": role, "model": spec.name, "pooling": spec.pooling, "status": status}
