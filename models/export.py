"""Export a training run's weights into the package (``lesionquant/segment/model/weights``).

    python -m models.export models/runs/final --name lesionnet-v2
    python -m models.export models/runs/final --lesion-run models/runs/mo_final \
        --name lesionnet-v3

Writes ``<file>.pt`` (``{"config", "state_dict", "meta"}``, float32, loadable with
``torch.load(weights_only=True)``) and records its sha256 in ``registry.json``. With
``--lesion-run`` the file holds a :class:`~lesionquant.segment.model._net.NetPair`: the
lungs of ``run``'s lung head, the lesions of the lesion run's lesion head; several
``--lesion-run`` make the lesions their
:class:`~lesionquant.segment.model._net.NetEnsemble`::

    python -m models.export models/runs/final --name lesionnet-v5 \
        --lesion-run models/runs/md_final models/runs/md_s1_final models/runs/md_s2_final

``shipped`` in place of the lung run takes the shipped weights' lung network (byte for
byte lesionnet-v2's ``runs/final``), for a machine without the lung network's runs::

    python -m models.export shipped --lesion-run models/runs/ss_fold0 --name lesionnet-x
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from lesionquant.segment.model._net import LesionNet, NetEnsemble, NetPair
from lesionquant.segment.model._weights import load_model, sha256_file

WEIGHTS = Path(__file__).resolve().parents[1] / "lesionquant" / "segment" / "model" / "weights"
#: The lung "run" that names the shipped weights' lung network.
SHIPPED = "shipped"


def shipped_lungs() -> tuple[LesionNet, dict]:
    """The shipped weights' lung network (a pair's ``lungs``, else the network itself) and
    where it came from."""
    model = load_model("cpu")
    return getattr(model.net, "lungs", model.net), {"weights": model.name,
                                                    "sha256": model.sha256}


def _run_net(run: Path) -> tuple[LesionNet, dict]:
    meta = json.loads((run / "meta.json").read_text())
    st = torch.load(run / "ckpt.pt", map_location="cpu", weights_only=True)
    if st.get("step") != meta["steps"]:
        raise SystemExit(f"{run}: not finished (step {st.get('step')} of {meta['steps']})")
    net = LesionNet(**meta["config"])
    net.load_state_dict(st["model"])  # checks the keys and shapes
    return net, {k: v for k, v in meta.items() if k != "config"}


def export(run: Path, name: str, description: str,
           lesion_runs: list[Path] | None = None, cons_bias: float = 0.0,
           lesion_low: float | None = None) -> str:
    """Write the weights of ``run`` as ``name`` (with ``lesion_runs``: the pair of the lung
    head of ``run`` and the lesion head of the lesion run, or of the ensemble of the
    lesion runs when there are several; ``cons_bias``: the learned class's
    consolidation-vs-GGO logit bias, stored in the file; ``lesion_low``: the lesion mask's
    hysteresis threshold, stored in the file; ``run`` named :data:`SHIPPED`: the
    shipped lung network, :func:`shipped_lungs`); returns their sha256."""
    net, meta = shipped_lungs() if str(run) == SHIPPED else _run_net(run)
    if lesion_runs:
        members = [_run_net(r) for r in lesion_runs]
        les = members[0][0] if len(members) == 1 else NetEnsemble([m[0] for m in members])
        net = NetPair(net, les)
        les_meta = [{"run": r.name, **m[1]} for r, m in zip(lesion_runs, members, strict=True)]
        meta = {"lungs": {"run": run.name, **meta},
                "lesions": les_meta[0] if len(les_meta) == 1 else les_meta}
    blob = {"config": dict(net.config),
            "state_dict": {k: v.detach().clone().float() if v.is_floating_point() else v
                           for k, v in net.state_dict().items()},
            "meta": json.dumps(meta)}
    if cons_bias:
        blob["cons_bias"] = float(cons_bias)
    if lesion_low is not None:
        blob["lesion_low"] = float(lesion_low)
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
    p.add_argument("run", type=Path, help="the lung run; shipped: the shipped weights' lung "
                   "network")
    p.add_argument("--lesion-run", type=Path, nargs="+", default=None,
                   help="a second run whose lesion head gives the lesions (a network pair); "
                   "several: the mean of their softmax (an ensemble)")
    p.add_argument("--name", default="lesionnet-v4")
    p.add_argument("--description", default="two 2D U-Nets (16 base channels, 4 levels, "
                   "1.5 mm): lungs trained on MedSeg + synthetic (lesionnet-v2's), lesions on "
                   "the 65 MedSeg slices with per-slice Dice, coarse pixels and a "
                   "dependent-density band; see models/README.md")
    p.add_argument("--cons-bias", type=float, default=0.0,
                   help="the learned class's consolidation-vs-GGO logit bias inside the "
                   "lesion (models/README.md: chosen by cross-validation)")
    p.add_argument("--lesion-low", type=float, default=None,
                   help="hysteresis of the lesion mask: lesion probability at or above which "
                   "a pixel joined in-plane to lesion is lesion (models/README.md)")
    a = p.parse_args()
    print(export(a.run, a.name, a.description, a.lesion_run, a.cons_bias, a.lesion_low))


if __name__ == "__main__":
    main()
