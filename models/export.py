"""Export a training run's weights into the package (``lesionquant/segment/model/weights``).

    python -m models.export models/runs/final --name lesionnet-v2

Writes ``<file>.pt`` (``{"config", "state_dict", "meta"}``, float32, loadable with
``torch.load(weights_only=True)``) and records its sha256 in ``registry.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from lesionquant.segment.model._net import LesionNet
from lesionquant.segment.model._weights import sha256_file

WEIGHTS = Path(__file__).resolve().parents[1] / "lesionquant" / "segment" / "model" / "weights"


def export(run: Path, name: str, description: str) -> str:
    """Write the weights of ``run`` as ``name``; returns their sha256."""
    meta = json.loads((run / "meta.json").read_text())
    st = torch.load(run / "ckpt.pt", map_location="cpu", weights_only=True)
    net = LesionNet(**meta["config"])
    net.load_state_dict(st["model"])  # checks the keys and shapes
    blob = {"config": dict(meta["config"]),
            "state_dict": {k: v.detach().clone().float() if v.is_floating_point() else v
                           for k, v in net.state_dict().items()},
            "meta": json.dumps({k: v for k, v in meta.items() if k != "config"})}
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    fname = name.replace("-", "_") + ".pt"
    torch.save(blob, WEIGHTS / fname)
    digest = sha256_file(WEIGHTS / fname)
    reg_path = WEIGHTS / "registry.json"
    reg = json.loads(reg_path.read_text()) if reg_path.exists() else {}
    reg[name] = {"file": fname, "sha256": digest, "description": description}
    reg_path.write_text(json.dumps(reg, indent=1, sort_keys=True) + "\n")
    return digest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", type=Path)
    p.add_argument("--name", default="lesionnet-v2")
    p.add_argument("--description", default="2D U-Net (16 base channels, 4 levels, 1.5 mm), "
                   "MedSeg 65 slices + synthetic; see models/README.md")
    a = p.parse_args()
    print(export(a.run, a.name, a.description))


if __name__ == "__main__":
    main()
