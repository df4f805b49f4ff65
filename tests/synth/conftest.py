"""Small phantoms shared by the synth tests (session-scoped: each is built once)."""

from __future__ import annotations

import pytest

from lesionquant.synth import make_phantom

# whole adult chest on a coarse grid: 96 x 3.7 mm = 355 mm FOV, 48 x 6 mm = 288 mm
SMALL = dict(size_xyz=(96, 96, 48), spacing_mm=(3.7, 3.7, 6.0))


@pytest.fixture(scope="session")
def healthy():
    return make_phantom(**SMALL, seed=3)


@pytest.fixture(scope="session")
def diseased():
    return make_phantom(**SMALL, seed=3, lesion_burden_pct=12.0, ggo_fraction=0.6)


@pytest.fixture(scope="session")
def noiseless_pair():
    """Same seed with and without lesions, no noise: the lesion is the only difference."""
    kw = dict(size_xyz=(128, 128, 64), spacing_mm=(2.8, 2.8, 4.5), seed=5, noise_hu=0.0)
    return make_phantom(**kw), make_phantom(**kw, lesion_burden_pct=15.0, ggo_fraction=0.7)
