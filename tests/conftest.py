"""Shared fixtures: the real-data folder and the realdata policy.

Real data lives in ``../shared/data`` beside the repository (or wherever
``LESIONQUANT_DATA`` points). When it is absent, ``realdata`` tests skip with a clear
reason; with ``LESIONQUANT_REQUIRE_REALDATA=1`` (set by ``.ci/run``) they fail instead,
so CI always exercises real data.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _data_root() -> Path:
    env = os.environ.get("LESIONQUANT_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def _require_realdata() -> bool:
    return os.environ.get("LESIONQUANT_REQUIRE_REALDATA", "") not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def data_root() -> Path:
    """Root of the real data (``../shared/data``); skips or fails when absent."""
    root = _data_root()
    if not (root / "README.md").is_file():
        msg = (f"real data not found at {root} (set LESIONQUANT_DATA, or place the "
               "shared data beside the repository)")
        if _require_realdata():
            pytest.fail(f"LESIONQUANT_REQUIRE_REALDATA is set but {msg}")
        pytest.skip(msg)
    return root


@pytest.fixture(scope="session")
def chest_dir(data_root: Path) -> Path:
    return data_root / "chest"


@pytest.fixture(scope="session")
def edge_dir(data_root: Path) -> Path:
    return data_root / "dicom-edge"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Make every ``realdata`` test request ``data_root`` so the policy applies uniformly."""
    for item in items:
        if item.get_closest_marker("realdata") and "data_root" not in getattr(
            item, "fixturenames", ()
        ):
            item.fixturenames.append("data_root")  # type: ignore[attr-defined]
