"""Train the glucose forecaster on virtual patients and export it to ONNX (opset 17). Needs torch.

Network: an MLP (N_FEATURES -> 128 -> 128 -> 128 -> 4 x H, GELU) on the shared features
(:mod:`models.forecast.features`). Per horizon it outputs, as the CHANGE from the last reading in units of
50 mg/dL: a mean (trained with squared error), a median and the 2.5 % / 97.5 % quantiles (pinball loss).
The quantiles are built as median -+ softplus(.), so lower <= median <= upper always holds.

ONNX graph: input ``features`` float32 (B, N_FEATURES); output ``change`` float32 (B, 4, H) with rows
[mean, lower_2.5, median, upper_97.5]. The sidecar ``glucose_forecaster.json`` records the version, the
SHA-256 of the .onnx, the feature version and names, horizons, scales, training data and validation numbers.

Retrain (deterministic on CPU for a given data set and seed)::

    python -m hardware_sim.datasets --out /tmp/glucotwin-data
    python -m models.forecast.training.train --data /tmp/glucotwin-data/dataset.npz --out models/forecast
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.forecast.features import FEATURE_NAMES, FEATURE_VERSION, HORIZONS_MIN, N_FEATURES, TARGET_SCALE_MG_DL
from models.forecast.training.dataset import FeatureSet, build_feature_set

MODEL_VERSION = "glucose_forecaster-v1"
QUANTILES = (0.025, 0.5, 0.975)
OUTPUT_ROWS = ("mean", "lower_95", "median", "upper_95")


class ForecastNet(nn.Module):
    def __init__(self, n_in: int = N_FEATURES, n_horizons: int = len(HORIZONS_MIN), hidden: int = 128) -> None:
        super().__init__()
        self.n_horizons = n_horizons
        self.body = nn.Sequential(
            nn.Linear(n_in, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
            nn.Linear(hidden, hidden), nn.GELU(),
        )
        self.head = nn.Linear(hidden, 4 * n_horizons)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.head(self.body(x)).reshape(-1, 4, self.n_horizons)
        mean, median = o[:, 0], o[:, 1]
        lower = median - nn.functional.softplus(o[:, 2])
        upper = median + nn.functional.softplus(o[:, 3])
        return torch.stack([mean, lower, median, upper], dim=1)


def loss_fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Masked squared error (mean) + pinball losses (quantiles); NaN targets are left out."""
    mask = torch.isfinite(y)
    y0 = torch.where(mask, y, torch.zeros_like(y))
    m = mask.float()
    n = m.sum().clamp(min=1.0)
    total = (((out[:, 0] - y0) ** 2) * m).sum() / n
    for row, q in zip((1, 2, 3), QUANTILES):
        err = y0 - out[:, row]
        total = total + 2.0 * (torch.maximum(q * err, (q - 1) * err) * m).sum() / n
    return total


def evaluate(model: nn.Module, fs: FeatureSet) -> dict[str, dict[str, float]]:
    """RMSE (mg/dL) of the mean and raw 95 % quantile coverage (%) per horizon."""
    model.eval()
    with torch.no_grad():
        out = model(torch.from_numpy(fs.x)).numpy()
    result = {}
    for j, h in enumerate(HORIZONS_MIN):
        ok = np.isfinite(fs.y[:, j])
        err = (out[ok, 0, j] - fs.y[ok, j]) * TARGET_SCALE_MG_DL
        inside = (fs.y[ok, j] >= out[ok, 1, j]) & (fs.y[ok, j] <= out[ok, 3, j])
        result[f"{h:g}"] = {"n": int(ok.sum()), "rmse_mg_dl": float(np.sqrt(np.mean(err**2))),
                            "coverage_95_percent": float(100 * inside.mean())}
    return result


def train(
    data_path: Path, out_dir: Path, *, seed: int = 0, epochs: int = 30, batch_size: int = 1024, lr: float = 2e-3,
    hidden: int = 128, threads: int = 2, log=print,
) -> dict[str, object]:
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    started = time.perf_counter()
    train_fs = build_feature_set(data_path, "train", seed=seed)
    val_fs = build_feature_set(data_path, "val", seed=seed + 1)
    log(f"samples: train {len(train_fs.y)}, val {len(val_fs.y)} ({time.perf_counter() - started:.1f} s)")
    model = ForecastNet(hidden=hidden)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    x = torch.from_numpy(train_fs.x)
    y = torch.from_numpy(train_fs.y)
    xv, yv = torch.from_numpy(val_fs.x), torch.from_numpy(val_fs.y)
    gen = torch.Generator().manual_seed(seed)
    best = (float("inf"), -1, None)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x), batch_size):
            idx = perm[i : i + batch_size]
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        sched.step()
        model.eval()
        with torch.no_grad():
            val_loss = float(loss_fn(model(xv), yv))
        if val_loss < best[0]:
            best = (val_loss, epoch, {k: v.clone() for k, v in model.state_dict().items()})
        log(f"epoch {epoch + 1:>3}: train {total / len(x):.4f}  val {val_loss:.4f}")
    assert best[2] is not None
    model.load_state_dict(best[2])
    val_metrics = evaluate(model, val_fs)
    train_seconds = time.perf_counter() - started
    log(f"best epoch {best[1] + 1}; validation: {json.dumps(val_metrics)}")
    onnx_path = out_dir / "glucose_forecaster.onnx"
    export_onnx(model, onnx_path)
    digest = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    manifest_path = data_path.parent / "manifest.json"
    data_manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    sidecar = {
        "model_version": MODEL_VERSION,
        "onnx_file": onnx_path.name,
        "sha256": digest,
        "opset": 17,
        "feature_version": FEATURE_VERSION,
        "feature_names": list(FEATURE_NAMES),
        "horizons_min": list(HORIZONS_MIN),
        "output_rows": list(OUTPUT_ROWS),
        "quantiles": list(QUANTILES),
        "target_scale_mg_dl": TARGET_SCALE_MG_DL,
        "input_name": "features",
        "output_name": "change",
        "training": {
            "data_npz_sha256": hashlib.sha256(data_path.read_bytes()).hexdigest(),
            "data_manifest": {k: data_manifest.get(k) for k in ("rows", "row_days", "subjects", "plan")},
            "samples_train": int(len(train_fs.y)), "samples_val": int(len(val_fs.y)),
            "seed": seed, "epochs": epochs, "best_epoch": best[1] + 1, "batch_size": batch_size, "lr": lr,
            "hidden": hidden, "parameters": int(sum(p.numel() for p in model.parameters())),
            "cgm_only_fraction": 0.25, "torch": torch.__version__, "train_seconds": round(train_seconds, 1),
        },
        "validation": val_metrics,
    }
    (out_dir / "glucose_forecaster.json").write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
    return sidecar


def export_onnx(model: nn.Module, path: Path) -> None:
    model.eval()
    dummy = torch.zeros(1, N_FEATURES)
    torch.onnx.export(
        model, (dummy,), str(path), opset_version=17, input_names=["features"], output_names=["change"],
        dynamic_axes={"features": {0: "batch"}, "change": {0: "batch"}}, dynamo=False,
    )
    import onnx

    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    proto.producer_name = "glucotwin"
    proto.doc_string = f"{MODEL_VERSION}: glucose change forecast (mean, 2.5/50/97.5 % quantiles) at {HORIZONS_MIN} min"
    proto.model_version = 1
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = "model_version", MODEL_VERSION
    entry = proto.metadata_props.add()
    entry.key, entry.value = "feature_version", FEATURE_VERSION
    onnx.save(proto, str(path))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.forecast.training.train", description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, type=Path, help="dataset.npz from hardware_sim.datasets")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1], help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if not args.data.exists():
        print(f"error: {args.data}: no such file", file=sys.stderr)
        return 2
    sidecar = train(args.data, args.out, seed=args.seed, epochs=args.epochs, hidden=args.hidden, threads=args.threads)
    print(json.dumps({k: sidecar[k] for k in ("model_version", "sha256", "validation")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
