"""``ubernet predict --checkpoint C --out DIR IMAGE...``: every task's output for any images.

Outputs per task go to ``DIR/<task>/<stem>.<ext>`` in the formats ``ubernet score`` reads, plus
``DIR/panel/<stem>.png`` with the input and all outputs side by side. A folder argument means every image in it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ubernet.cli.runtime import add_precision_option, start
from ubernet.cli.tables import add_weights_arg, scales_arg
from ubernet.errors import UbernetError

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".webp"}


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True)
    add_weights_arg(p)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--tasks", default=None, help="comma-separated subset of the model's tasks")
    p.add_argument("--no-panel", action="store_true", help="skip the per-image panel PNG")
    add_precision_option(p)
    p.add_argument("--scales", type=scales_arg, default=None,
                   help="multi-scale testing: dense outputs averaged over these input scales, e.g. 0.5,1,1.5")
    p.add_argument("--flip", action="store_true",
                   help="flip testing: dense outputs also averaged over the left-right mirrored image")


def expand(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for s in paths:
        p = Path(s)
        if p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_EXTS))
        elif p.exists():
            out.append(p)
        else:
            raise UbernetError(f"{p}: no such file or folder")
    if not out:
        raise UbernetError(f"no images found in {paths}")
    unique = list(dict.fromkeys(p.resolve() for p in out))  # the same file named twice is predicted once
    by_stem: dict[str, list[Path]] = {}
    for p in unique:
        by_stem.setdefault(p.stem, []).append(p)
    clash = next((ps for ps in by_stem.values() if len(ps) > 1), None)
    if clash is not None:  # outputs are named by stem (what `ubernet score` matches): one would overwrite another
        raise UbernetError(f"{', '.join(map(str, clash))} would write the same outputs ({clash[0].stem}.*); "
                           "predict them into separate --out folders")
    return unique


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ubernet.predict import predict_image
    from ubernet.report import panel, save_png
    from ubernet.run import load_model

    precision = start("predict", args.precision)
    model, _ = load_model(args.checkpoint, weights=args.weights)
    tasks = args.tasks.split(",") if args.tasks else None
    out = Path(args.out)
    for path in tqdm(expand(args.images), desc="predict"):
        image, pred = predict_image(model, path, tasks=tasks, bf16=precision.bf16, scales=args.scales,
                                    flip=args.flip)
        for name, p in pred.items():
            model.tasks[name].save(p, out, path.stem)
        if not args.no_panel:
            save_png(panel(model, [image], [pred]), out / "panel" / f"{path.stem}.png")
    print(f"wrote {out}")
    return 0
