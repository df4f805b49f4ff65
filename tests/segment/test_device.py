"""resolve_device: cpu without torch, auto falls back, explicit missing CUDA raises."""

from __future__ import annotations

import pytest

from lesionquant.segment import DeviceError, resolve_device


def test_cpu():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device(" CPU ") == "cpu"


def test_auto_picks_an_available_device():
    import torch

    expected = "cuda:0" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == expected


def test_missing_cuda_raises():
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(DeviceError, match="CUDA device"):
        resolve_device(f"cuda:{n}")


def test_bad_spec_is_a_programming_error():
    with pytest.raises(ValueError):
        resolve_device("tpu")
