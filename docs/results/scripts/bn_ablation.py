"""Which part of BatchNorm pruning breaks a network? Undo one kind of pruned entry at a time.

Prunes each architecture's base model of a finished study folder by global L1 with scope
``all`` (as the original code: every parameter array, BatchNorm statistics included), then
restores the base's values of one kind of BatchNorm entry and measures accuracy and
disagreement with the base on the study's test set. Prints a Markdown table.

    python docs/results/scripts/bn_ablation.py runs/archs --amount 0.1

The study folder is the one written by
``funcsim run docs/results/configs/fashion_mnist_archs.yaml --out runs/archs``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from funcsim.compress.prune import l1_unstructured
from funcsim.data import load_dataset
from funcsim.train import build_model
from funcsim.train.evaluate import predict

RESTORE = {
    "nothing": (),
    "running variances": ("running_var",),
    "running means and variances": ("running_mean", "running_var"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path, help="a study folder with trained base models")
    ap.add_argument("--amount", type=float, default=0.1, help="fraction pruned (default 0.1)")
    args = ap.parse_args()
    study = json.loads((args.run_dir / "study.json").read_text())
    config = study.get("config", study)
    limits = config.get("data", {})
    protocol = config.get("protocol", "paper")
    base_seed = config["seeds"][0]
    print(
        "| architecture | BatchNorm entries zeroed | restored after pruning | accuracy % "
        "| disagreement with base % |"
    )
    print("|:---|---:|:---|---:|---:|")
    for dataset in config["datasets"]:
        data = load_dataset(dataset, test_limit=limits.get("test_limit"), train_limit=1)
        y = data.y_test.numpy()
        for arch in config["archs"]:
            (job,) = sorted(args.run_dir.glob(f"jobs/train-{dataset}-{arch}-s{base_seed}-*"))
            model = build_model(arch, data, base_seed, protocol=protocol)
            model.load_state_dict(load_file(job / "final.safetensors"))
            model.eval()
            base = predict(model, data.x_test).argmax(1)
            original = model.state_dict()
            pruned = l1_unstructured(model, amount=args.amount, scope="all").model
            pruned_state = {k: v.clone() for k, v in pruned.state_dict().items()}
            zeroed = {
                kind: sum(
                    int(((pruned_state[k] == 0) & (original[k] != 0)).sum())
                    for k in original
                    if k.endswith(kind)
                )
                for kind in ("running_mean", "running_var")
            }
            total = sum(v.numel() for k, v in original.items() if k.endswith("running_var"))
            counts = (
                f"{zeroed['running_var']} of {total} variances, "
                f"{zeroed['running_mean']} of {total} means"
            )
            for label, kinds in RESTORE.items():
                state = {
                    k: (original[k] if k.endswith(kinds) else v).clone()  # endswith(()) is False
                    for k, v in pruned_state.items()
                }
                pruned.load_state_dict(state)
                p = predict(pruned, data.x_test).argmax(1)
                print(
                    f"| {arch} | {counts} | {label} | {100 * np.mean(p == y):.2f} "
                    f"| {100 * np.mean(p != base):.2f} |"
                )


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
