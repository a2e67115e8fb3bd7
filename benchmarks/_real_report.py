"""Reports of the real benchmark: ``OUT/report.json`` (every number), ``OUT/report.md`` (a markdown section), and —
after a complete evaluation only — that section rewritten in place in ``docs/_parts/real-benchmarks.md``
(between ``<!-- real-bsds-sod:TRUNK -->`` markers, so the two trunks' sections coexist)."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TITLES = {
    "mobilenet_v2": "MobileNetV2, ImageNet-initialised (honest val figure)",
    "vgg16-hed": "VGG-16 initialised from HED's BSDS500 weights (val boundaries CONTAMINATED)",
}
DOCS_HEADER = """# Real-data benchmark: boundaries + saliency on BSDS500 + SOD

Written by `benchmarks/real_bsds_sod.py` (see docs/real-data.md for the protocol). Each section is replaced by the
latest complete run of its trunk. Boundaries: BSDS500 val (100 images), exact benchmark (99 thresholds, every
annotator, edge NMS). Saliency: max F (beta² = 0.3) and MAE on SOD masks of BSDS500 train images held out of
training.
"""


def _rel(path: str | Path) -> str:
    p = Path(path).resolve()
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)


def commands(summary: dict[str, Any], out: Path, args: argparse.Namespace) -> dict[str, str]:
    """The exact commands: the run itself and the two ``ubernet score`` calls reproducing its numbers."""
    argv = [a if not Path(a).exists() else _rel(a) for a in summary["argv"][1:]]
    data = args.data.resolve()
    o = _rel(out)
    cmds = {
        "run": " ".join([".venv/bin/python", _rel(summary["argv"][0]), *map(shlex.quote, argv)]),
        "score_boundaries": f".venv/bin/ubernet score boundaries --pred {o}/pred/boundaries/val "
                            f"--gt {_rel(data / 'bsds500' / 'groundTruth' / 'val')} --nms "
                            f"--imageset {o}/eval-val.txt",
        "score_saliency": f".venv/bin/ubernet score saliency --pred {o}/pred/saliency/holdout "
                          f"--gt {_rel(data / 'sod' / 'masks')} --imageset {o}/eval-holdout.txt",
    }
    if "boundaries_folder" in summary and args.predict_gt is not None:
        name = args.predict_folder.name
        cmds["score_folder"] = (f".venv/bin/ubernet score boundaries --pred {o}/pred/boundaries/{name} "
                                f"--gt {_rel(args.predict_gt)} --nms")
    return cmds


def markdown(summary: dict[str, Any], cmds: dict[str, str]) -> str:
    b, s = summary["boundaries_val"], summary["saliency_holdout"]
    trunk = summary["trunk"]
    dev = "" if summary["complete_eval"] else " — DEVELOPMENT RUN (partial evaluation, not a benchmark result)"
    flag = " (contaminated: HED was fine-tuned on BSDS500 train+val)" if summary["contaminated_val"] else ""
    cal = summary["plan"]["calibration"]
    lines = [
        f"<!-- real-bsds-sod:{trunk} -->",
        f"### {TITLES.get(trunk, trunk)}{dev}",
        "",
        "| task | set | images | ODS | OIS | AP | max F | MAE |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| boundaries | BSDS500 val{flag} | {b['images']} | {b['ods']:.4f} | {b['ois']:.4f} | {b['ap']:.4f} "
        "| | |",
        f"| saliency | SOD, held-out train images | {s['images']} | | | | {s['maxf']:.4f} | {s['mae']:.4f} |",
    ]
    if "boundaries_folder" in summary:
        f = summary["boundaries_folder"]
        lines.append(f"| boundaries | {summary['predict_folder']['images']} images of the predicted folder "
                     f"| {f['images']} | {f['ods']:.4f} | {f['ois']:.4f} | {f['ap']:.4f} | | |")
    u = summary["union"]
    scales = summary.get("test_scales", [1.0])  # reports written before multi-scale testing have none
    test_scales = ("1 (one pass)" if scales == [1.0]
                   else ", ".join(f"{x:g}" for x in scales) + " (predictions averaged)")
    lines += [
        "",
        f"Training: {summary['steps_done']} of {summary['steps_planned']} planned steps (one image each; "
        f"{u.get('images')} union images, {u.get('boundaries', 0)} with boundaries, {u.get('saliency', 0)} with "
        f"saliency), {summary['train_minutes']} min; whole run {summary['total_minutes']} min on "
        f"{summary['threads']} thread(s), load average {summary['load_average_start']} at the start "
        f"(measured {cal['step']:.2f} s/step, {cal['predict']:.2f} s per 481×321 prediction). Exact matcher: "
        f"{b['cpu_seconds_per_image']} CPU s/image, {b['seconds']} s for {b['images']} images on "
        f"{b['workers']} processes. Hold-out: {len(summary['holdout'])} images"
        + (" (their boundaries trained)" if summary["holdout_boundaries"] else " (left out of training entirely)")
        + f". Test scales: {test_scales}.",
        "",
        "```",
        cmds["run"],
        cmds["score_boundaries"],
        cmds["score_saliency"],
        *([cmds["score_folder"]] if "score_folder" in cmds else []),
        "```",
        f"<!-- /real-bsds-sod:{trunk} -->",
    ]
    return "\n".join(lines) + "\n"


def update_docs(path: Path, trunk: str, section: str) -> None:
    """Replace (or append) this trunk's section of the docs part."""
    start, end = f"<!-- real-bsds-sod:{trunk} -->", f"<!-- /real-bsds-sod:{trunk} -->"
    text = path.read_text() if path.exists() else DOCS_HEADER
    if start in text and end in text:
        a, b = text.index(start), text.index(end) + len(end) + 1
        text = text[:a] + section + text[b:]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def write_reports(summary: dict[str, Any], out: Path, args: argparse.Namespace, docs: Path | None) -> None:
    cmds = commands(summary, out, args)
    summary = {**summary, "commands": cmds}
    (out / "report.json").write_text(json.dumps(summary, indent=1) + "\n")
    section = markdown(summary, cmds)
    (out / "report.md").write_text(section)
    print(section)
    if docs is not None:
        update_docs(docs, summary["trunk"], section)
        print(f"updated {_rel(docs)}")
