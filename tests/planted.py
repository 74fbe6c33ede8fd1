"""Text planted outside a data folder, for tests that prove none of it is ever read."""

from __future__ import annotations

from pathlib import Path


def outside_folder(base: Path, secret: str, chunks: int = 5) -> Path:
    """``base/outside``: a file holding ``secret`` and a folder of chunk-like files quoting it."""
    outside = base / "outside"
    (outside / "folder").mkdir(parents=True)
    (outside / "secret.md").write_text(secret, encoding="utf-8")
    for i in range(chunks):
        (outside / "folder" / f"{i}.txt").write_text(f"{secret} {i}", encoding="utf-8")
    return outside
