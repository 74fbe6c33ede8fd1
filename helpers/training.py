"""One way to run a training job: build once under a lock, publish atomically, keep a log.

Pre-training (:mod:`helpers.pretraining`) and fine-tuning (:mod:`helpers.finetuning`) both
train into a temporary folder that is renamed into place only when complete (see
:func:`helpers.storage.building_folder`), under a per-model lock, and both leave a
:class:`TrainingLog` beside the weights. Chapters, the command line and ``bench/`` read
logs through :meth:`TrainingLog.load`, never by parsing the file themselves.

Example
-------
>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp()) / "toy-model"
>>> def train(out):
...     return TrainingLog(records=[{"step": 1, "loss": 0.5}], seconds=0.1, parameters=3)
>>> path = build_once(folder, {"settings": 1}, train)
>>> TrainingLog.load(path).frame()["loss"].tolist()
[0.5]
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from .storage import building_folder, is_complete, model_lock

LOG_FILE = "training_log.json"


@dataclass
class TrainingLog:
    """What a training run recorded: per-checkpoint ``records``, wall ``seconds``, size.

    ``summary`` holds run-level figures (for example the final held-out loss).
    """

    records: list[dict]
    seconds: float
    parameters: int
    summary: dict = field(default_factory=dict)

    def frame(self) -> pd.DataFrame:
        """The records as a table, one row per checkpoint."""
        return pd.DataFrame(self.records)

    def save(self, folder: Path) -> None:
        (Path(folder) / LOG_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, folder: Path) -> TrainingLog:
        """Read the log saved beside a trained model."""
        data = json.loads((Path(folder) / LOG_FILE).read_text())
        return cls(**{k: data[k] for k in ("records", "seconds", "parameters", "summary")})


def build_once(folder: Path, inputs: dict, train: Callable[[Path], TrainingLog]) -> Path:
    """Return ``folder``, first running ``train(tmp)`` and publishing its result if needed.

    ``inputs`` (what defines the model) is written into the completion marker. A second
    process asking for the same folder waits on the lock and then reuses the result; a
    killed run leaves nothing that looks complete, and the next call cleans up and retrains.
    """
    if is_complete(folder):
        return folder
    with model_lock(folder):
        if is_complete(folder):  # another process finished it while we waited
            return folder
        with building_folder(folder, inputs) as tmp:
            train(tmp).save(tmp)
    return folder
