"""``ubernet data stats``: counts per task of a dataset on disk — the first thing to run on a new dataset.

ubernet data stats --format bsds500 --root BSR/BSDS500/data --split train --json stats.json
ubernet data stats --format saliency --images bsds500/images/train --masks sod/masks
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ubernet.errors import UbernetError

FORMATS = ("voc", "sbd", "bsds500", "pascal-part", "pascal-context", "nyud", "saliency", "coco", "synth")


def add_parser(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    s = sub.add_parser(
        "stats",
        help="counts per task (images, objects, classes, annotators, pixels)",
        description="Read a dataset with ubernet's reader and print counts per task.",
    )
    s.add_argument("--format", required=True, choices=FORMATS, help="dataset format")
    s.add_argument("--root", type=Path, help="the dataset's own top folder (VOC: the one holding Annotations/)")
    s.add_argument("--split", help="split name (default: the format's usual one, e.g. train; 'all' for saliency)")
    s.add_argument("--json", type=Path, metavar="FILE", help="also write the counts as JSON")
    s.add_argument(
        "--skip-bad", action="store_true", help="skip malformed images/annotations, count them and list them at the end"
    )
    s.add_argument(
        "--no-pixels",
        action="store_true",
        help="only counts the records carry (fast: no image or label file is decoded)",
    )
    s.add_argument("--limit", type=int, metavar="N", help="only the first N images")
    s.add_argument("--images", type=Path, metavar="DIR", help="saliency/pascal-part/coco: image folder")
    s.add_argument("--masks", type=Path, metavar="DIR", help="saliency: mask folder")
    s.add_argument("--annotations", type=Path, metavar="FILE", help="coco: the instances JSON")
    s.add_argument("--quiet", action="store_true", help="no progress bar")


def _options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if args.images is not None:
        if args.format not in ("saliency", "pascal-part", "coco"):
            raise UbernetError(f"--images applies to saliency, pascal-part and coco, not {args.format}")
        opts["images"] = args.images
    if args.masks is not None:
        if args.format != "saliency":
            raise UbernetError("--masks applies to --format saliency only")
        opts["masks"] = args.masks
    if args.annotations is not None:
        if args.format != "coco":
            raise UbernetError("--annotations applies to --format coco only")
        opts["annotations"] = args.annotations
    return opts


def _pct(n: int, total: int) -> str:
    return f"{100.0 * n / total:.2f}%" if total else "-"


def format_stats(stats: dict[str, Any], title: str) -> str:
    """The readable table printed by ``ubernet data stats``."""
    lines = [title, f"  {'images':<28}{stats['images']}"]
    if len(stats.get("sources", {})) > 1:
        for src, n in stats["sources"].items():
            lines.append(f"    {'source ' + src:<26}{n}")
    lines.append("  labelled for")
    for t, n in stats["tasks"].items():
        lines.append(f"    {t:<26}{n}")
    if not stats["tasks"]:
        lines.append("    (no task)")
    for key in ("objects", "difficult", "truncated"):
        if key in stats:
            lines.append(f"  {key:<28}{stats[key]}")
    if "annotators" in stats:
        a = stats["annotators_per_image"]
        lines.append(f"  {'annotators (annotations)':<28}{stats['annotators']} ({a['min']}..{a['max']} per image)")
    if "boundary_pixels" in stats:
        b = stats["boundary_pixels"]
        lines.append(
            f"  {'boundary pixels':<28}positive {_pct(b['positive'], b['total'])}, ignored "
            f"{_pct(b['ignored'], b['total'])}, negative {_pct(b['negative'], b['total'])}"
        )
    if "saliency_pixels" in stats:
        s = stats["saliency_pixels"]
        lines.append(
            f"  {'saliency pixels':<28}salient {_pct(s['salient'], s['total'])}, ignored "
            f"{_pct(s['ignored'], s['total'])}"
        )
    if "semseg_pixels" in stats:
        s = stats["semseg_pixels"]
        lines.append(f"  {'semseg pixels':<28}ignored {_pct(s['ignored'], s['total'])}")
    if "parts" in stats:
        p = stats["parts"]
        lines.append(f"  {'parts images with a person':<28}{p['images_with_person']} of {p['images']}")
        total = sum(p["pixels"].values())
        lines.append("    " + ", ".join(f"{k} {_pct(v, total)}" for k, v in p["pixels"].items()))
    for key, label in (("normals_pixels", "valid normals"), ("depth_pixels", "valid depth")):
        if key in stats:
            v = stats[key]
            extra = f" (range {v['min']:.3g}..{v['max']:.3g})" if v.get("min") is not None else ""
            lines.append(f"  {label:<28}{_pct(v['valid'], v['total'])}{extra}")
    classes = stats.get("classes")
    if classes:
        cols = [
            c
            for c in ("objects", "images", "pixels", "pixel_images", "boundary_pixels")
            if any(c in v for v in classes.values())
        ]
        width = max(12, *(len(n) for n in classes)) + 2
        lines.append("  classes")
        lines.append("    " + "class".ljust(width) + "".join(c.rjust(16) for c in cols))
        for name, v in classes.items():
            lines.append("    " + name.ljust(width) + "".join(str(v.get(c, 0)).rjust(16) for c in cols))
    if stats.get("skipped"):
        lines.append(f"skipped {len(stats['skipped'])}:")
        lines += [
            f"  {s['problem'] if s['problem'].startswith(s['path']) else s['path'] + ': ' + s['problem']}"
            for s in stats["skipped"]
        ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "data_command", None) != "stats":
        raise UbernetError("usage: ubernet data stats --format FORMAT --root DIR [--split S] [--json FILE]")
    from ubernet.data.readers import DEFAULT_SPLITS, ReaderReport, load_dataset
    from ubernet.data.readers.stats import dataset_stats

    opts = _options(args)
    if (
        args.root is None
        and not (args.format == "saliency" and "images" in opts and "masks" in opts)
        and not (args.format == "coco" and "annotations" in opts)
    ):
        raise UbernetError("--root DIR is required (saliency: or --images DIR --masks DIR; coco: or --annotations)")
    split = args.split or DEFAULT_SPLITS[args.format]
    report = ReaderReport()
    records = load_dataset(args.format, args.root, split, skip_bad=args.skip_bad, report=report, **opts)
    if args.limit is not None:
        records = records[: max(0, args.limit)]
    progress = None
    if not args.no_pixels and not args.quiet:
        from tqdm import tqdm

        def progress(it):  # type: ignore[no-untyped-def]
            return tqdm(it, desc="reading", unit="img", file=sys.stderr, leave=False)

    stats = dataset_stats(records, pixels=not args.no_pixels, skip_bad=args.skip_bad, report=report, progress=progress)
    where = args.root if args.root is not None else (opts.get("masks") or opts.get("annotations"))
    stats = {"format": args.format, "root": str(where), "split": split, **stats}
    print(format_stats(stats, f"{args.format} {where} (split {split})"))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(stats, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
