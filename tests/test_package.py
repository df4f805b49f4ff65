"""The package skeleton: public API, settings validation, error messages, CLI basics."""

from __future__ import annotations

import subprocess
import sys

import pytest

import lesionquant
from lesionquant import Settings
from lesionquant.cli import main
from lesionquant.errors import InvalidInputError, LesionQuantError


def test_public_api_is_explicit():
    assert "Settings" in lesionquant.__all__
    assert "load_scan" in lesionquant.__all__
    for name in lesionquant.__all__:
        assert getattr(lesionquant, name) is not None


def test_import_is_light():
    code = ("import sys, lesionquant; "
            "mods = ('torch', 'SimpleITK', 'matplotlib', 'skimage'); "
            "heavy = [m for m in mods if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_settings_validate_and_roundtrip():
    s = Settings(method="classical", device="CPU")
    assert s.device == "cpu" and s.method.value == "classical"
    assert Settings.from_dict(s.to_dict()) == s
    with pytest.raises(ValueError, match="ggo_hu"):
        Settings(ggo_hu=(-300, -750))
    with pytest.raises(ValueError):
        Settings(method="magic")
    with pytest.raises(ValueError, match="unknown setting"):
        Settings.from_dict({"nope": 1})
    with pytest.raises(ValueError, match="device"):
        Settings(device="tpu")


def test_error_messages_are_one_line_and_name_the_source():
    err = InvalidInputError("truncated\npixel data", source="/x/y.dcm")
    assert str(err) == "/x/y.dcm: truncated pixel data"
    assert isinstance(err, LesionQuantError)


def test_cli_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert lesionquant.__version__ in capsys.readouterr().out


def test_cli_without_command_is_usage_error():
    assert main([]) == 2
