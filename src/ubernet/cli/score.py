"""``ubernet score TASK --pred P --gt G``: evaluate saved outputs of any method with the published protocols.

Files are paired by stem; see :mod:`ubernet.metrics.scoring` for the formats and for what happens to stems found
on one side only. Prints a table; ``--json FILE`` writes every number (curves and per-class values included).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ubernet.errors import UbernetError
from ubernet.metrics.pool import workers_arg

_HEADLINE: dict[str, tuple[str, ...]] = {
    "boundaries": ("ods", "ois", "ap", "ods_threshold"),
    "saliency": ("maxf", "mae"),
    "semseg": ("miou", "pixel_accuracy"),
    "parts": ("miou", "pixel_accuracy"),
    "normals": ("mean", "median", "rmse", "within_11.25", "within_22.5", "within_30"),
    "detection": ("map_voc07", "map_voc10", "coco_ap", "coco_ap50"),
    "semantic_boundaries": ("maxf", "ap"),
}


def add_parser(p: argparse.ArgumentParser) -> None:
    from ubernet.metrics.scoring import SCORE_TASKS

    p.add_argument("task", choices=list(SCORE_TASKS), help="which protocol")
    p.add_argument("--pred", required=True, type=Path, help="folder of predictions (<stem>.<ext>)")
    p.add_argument(
        "--gt",
        required=True,
        type=Path,
        help="ground-truth folder (BSDS groundTruth, SBD cls, VOC Annotations, masks, or ubernet synth)",
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="write all results as JSON")
    p.add_argument("--thresholds", type=int, default=99, help="boundary thresholds k/(N+1) (default 99)")
    p.add_argument(
        "--max-dist",
        type=float,
        default=None,
        help="boundary tolerance, fraction of the diagonal (default 0.0075; 0.02 for semantic_boundaries)",
    )
    p.add_argument("--nms", action="store_true", help="apply edge NMS to soft boundary maps before scoring")
    p.add_argument("--no-thin", action="store_true", help="do not thin thresholded boundary maps (not the benchmark)")
    p.add_argument(
        "--fast",
        action="store_true",
        help="APPROXIMATE boundary matching by distance transforms (not the benchmark; labelled)",
    )
    p.add_argument("--classes", type=int, default=None, help="number of classes for semseg/parts")
    p.add_argument(
        "--class-names",
        default=None,
        help="detection classes without background: comma-separated, or a file with one per line",
    )
    p.add_argument(
        "--coco",
        action="store_true",
        help="detection: also COCO AP@[.5:.95] / AP50 via pycocotools (optional cross-check)",
    )
    p.add_argument("--imageset", type=Path, default=None, help="evaluate only the stems listed in this file")
    p.add_argument("--strict", action="store_true", help="refuse stems present on one side only")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--workers", type=workers_arg, default=0,
                   help="processes for the exact boundary matchers (default 0: one per available core; 1: serial)")


def _class_names(arg: str | None) -> list[str] | None:
    if arg is None:
        return None
    path = Path(arg)
    if path.is_file():
        names = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    else:
        names = [n.strip() for n in arg.split(",") if n.strip()]
    if not names:
        raise UbernetError(f"--class-names {arg!r}: no class names")
    return names


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def format_table(result: dict[str, Any]) -> str:
    """A readable summary: headline numbers, then per-class values when the task has classes."""
    task = result["task"]
    lines = [f"{task}: {result['num_scored']} images" + (f" ({result['mode']})" if "mode" in result else "")]
    for k in _HEADLINE[task]:
        if k in result:
            lines.append(f"  {k:<16} {_fmt(result[k])}")
    per: dict[str, list[Any]] = {}
    if task == "detection":
        per = {n: [result["ap_voc07"][n], result["ap_voc10"][n]] for n in result["ap_voc07"]}
        head = ("class", "AP voc07", "AP voc10")
    elif task in ("semseg", "parts"):
        named = result.get("per_class_named") or {str(i): v for i, v in enumerate(result["per_class"])}
        per = {n: [v] for n, v in named.items()}
        head = ("class", "IoU")
    elif task == "semantic_boundaries":
        per = {n: [v["maxf"], v["ap"]] for n, v in result["per_class"].items()}
        head = ("class", "max F", "AP")
    if per:
        width = max(len(head[0]), *(len(n) for n in per))
        lines.append("  " + "  ".join([head[0].ljust(width), *(h.rjust(9) for h in head[1:])]))
        for n, vals in per.items():
            lines.append("  " + "  ".join([n.ljust(width), *(_fmt(v).rjust(9) for v in vals)]))
    if result["missing_predictions"]:
        lines.append(f"  {len(result['missing_predictions'])} images had no prediction (scored as empty)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ubernet.metrics.pool import metric_workers
    from ubernet.metrics.scoring import json_safe, score_folders

    def progress(items: list) -> Any:
        if args.quiet:
            return items
        from tqdm import tqdm

        return tqdm(items, desc=f"score {args.task}", unit="img", file=sys.stderr, leave=False)

    with metric_workers(args.workers):  # compute() resolves the workers' results inside the block
        result = score_folders(
            args.task,
            args.pred,
            args.gt,
            thresholds=args.thresholds,
            max_dist=args.max_dist,
            nms=args.nms,
            fast=args.fast,
            thin=not args.no_thin,
            num_classes=args.classes,
            class_names=_class_names(args.class_names),
            imageset=args.imageset,
            strict=args.strict,
            coco=args.coco,
            progress=progress,
        )
    for key, what in (
        ("missing_predictions", "ground truth without prediction, scored as an empty prediction"),
        ("unmatched_predictions", "prediction without ground truth, ignored"),
    ):
        stems = result[key]
        if stems:
            more = " ..." if len(stems) > 10 else ""
            print(f"warning: {len(stems)} {what}: {', '.join(stems[:10])}{more}", file=sys.stderr)
    print(format_table(result))
    if args.json is not None:
        try:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(json_safe(result), indent=1) + "\n")
        except OSError as e:
            raise UbernetError(f"{args.json}: cannot write JSON ({e})") from None
    return 0
