"""The one resolver of the review data folder (``../shared/data`` by default)."""

from __future__ import annotations

from pathlib import Path

from reviews_mtl.settings import DataSettings, env_name

DATA_DIR_ENV = env_name(DataSettings, "dir")  # REVIEWS_DATA_DIR


class DataError(Exception):
    """Root of the data package's errors: a data folder that was asked for and is not there."""


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def resolve_data_dir(data_dir: Path | str | None = None) -> Path | None:
    """The review data: an explicit path, else env ``REVIEWS_DATA_DIR``, else ``<repo>/../shared/data``.

    ``None`` when none is given and the default folder is absent: callers then use the project's sample.
    """
    if data_dir:
        path = Path(data_dir)
        if not path.is_dir():
            raise DataError(f"data directory not found: {path}")
        return path
    env = DataSettings().dir
    if env is not None:
        if not env.is_dir():
            raise DataError(f"{DATA_DIR_ENV}={env} is not a directory")
        return env
    default = repo_root().parent / "shared" / "data"
    return default if default.is_dir() else None
