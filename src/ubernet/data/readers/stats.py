"""Per-task counts of a list of records: what ``ubernet data stats`` prints.

Counts that the records carry (images, labelled tasks, boxes) need no pixels. With ``pixels=True`` every
sample is read once (which also checks every file) and pixel-level counts are added: class pixels from
``semseg``, annotations from ``boundaries_annotators``, positive/ignored fractions, valid normals/depth.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from ubernet.data.readers.base import ReaderReport, Record
from ubernet.data.sample import IGNORE, PART_NAMES, TASK_FIELDS, Sample
from ubernet.errors import DataError


def _class_name(names: Sequence[str] | None, i: int) -> str:
    return names[i] if names is not None and 0 <= i < len(names) else str(i)


class _Pixels:
    """Accumulates pixel-level counts over samples (sums, never averages of averages)."""

    def __init__(self) -> None:
        self.read = 0
        self.annotators = 0
        self.annotators_per_image: list[int] = []
        self.bnd = Counter()  # positive / negative / ignored / total
        self.sal = Counter()
        self.class_pixels: Counter = Counter()
        self.class_images: Counter = Counter()
        self.semseg_ignored = 0
        self.semseg_total = 0
        self.part_pixels: Counter = Counter()
        self.person_images = 0
        self.parts_images = 0
        self.sb_pixels: Counter = Counter()
        self.normals = Counter()
        self.depth = Counter()
        self.depth_range = [np.inf, -np.inf]

    def add(self, s: Sample) -> None:
        self.read += 1
        t = s.targets
        names = s.meta.get("class_names")
        if "boundaries_annotators" in t:
            k = int(t["boundaries_annotators"].shape[0])
            self.annotators += k
            self.annotators_per_image.append(k)
        if "boundaries" in t:
            b = t["boundaries"]
            self.bnd.update(
                positive=int((b == 1).sum()),
                negative=int((b == 0).sum()),
                ignored=int((b == IGNORE).sum()),
                total=b.size,
            )
        if "saliency" in t:
            m = t["saliency"]
            self.sal.update(salient=int((m == 1).sum()), ignored=int((m == IGNORE).sum()), total=m.size)
        if "semseg" in t:
            ids, counts = np.unique(t["semseg"], return_counts=True)
            for i, c in zip(ids.tolist(), counts.tolist()):
                if i == IGNORE:
                    self.semseg_ignored += c
                else:
                    self.class_pixels[_class_name(names, i)] += c
                    self.class_images[_class_name(names, i)] += 1
            self.semseg_total += t["semseg"].size
        if "parts" in t:
            self.parts_images += 1
            labelled_part = (t["parts"] > 0) & (t["parts"] != IGNORE)
            self.person_images += int(s.meta.get("has_person", bool(labelled_part.any())))
            ids, counts = np.unique(t["parts"], return_counts=True)
            for i, c in zip(ids.tolist(), counts.tolist()):
                self.part_pixels[PART_NAMES[i] if i < len(PART_NAMES) else "ignored"] += c
        if "semantic_boundaries" in t:
            per = t["semantic_boundaries"].reshape(t["semantic_boundaries"].shape[0], -1).sum(axis=1)
            for c, n in enumerate(per.tolist()):
                if n:
                    self.sb_pixels[_class_name(names, c + 1)] += n
        if "normals" in t:
            n = t["normals"]
            self.normals.update(valid=int((np.abs(n).sum(axis=2) > 0).sum()), total=n.shape[0] * n.shape[1])
        if "depth" in t:
            d = t["depth"]
            v = d[d > 0]
            self.depth.update(valid=int(v.size), total=d.size)
            if v.size:
                self.depth_range = [min(self.depth_range[0], float(v.min())), max(self.depth_range[1], float(v.max()))]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"images_read": self.read}
        if self.annotators_per_image:
            out["annotators"] = self.annotators
            out["annotators_per_image"] = {"min": min(self.annotators_per_image), "max": max(self.annotators_per_image)}
        if self.bnd["total"]:
            out["boundary_pixels"] = {k: self.bnd[k] for k in ("positive", "ignored", "negative", "total")}
        if self.sal["total"]:
            out["saliency_pixels"] = {k: self.sal[k] for k in ("salient", "ignored", "total")}
        if self.semseg_total:
            out["semseg_pixels"] = {"ignored": self.semseg_ignored, "total": self.semseg_total}
        if self.parts_images:
            out["parts"] = {
                "images": self.parts_images,
                "images_with_person": self.person_images,
                "pixels": dict(self.part_pixels),
            }
        if self.normals["total"]:
            out["normals_pixels"] = {"valid": self.normals["valid"], "total": self.normals["total"]}
        if self.depth["total"]:
            out["depth_pixels"] = {
                "valid": self.depth["valid"],
                "total": self.depth["total"],
                "min": self.depth_range[0] if self.depth["valid"] else None,
                "max": self.depth_range[1] if self.depth["valid"] else None,
            }
        return out


def dataset_stats(
    records: Sequence[Record],
    *,
    pixels: bool = True,
    read: Callable[[Record], Sample] | None = None,
    skip_bad: bool = False,
    report: ReaderReport | None = None,
    progress: Callable[[Iterable[Record]], Iterable[Record]] | None = None,
) -> dict[str, Any]:
    """Counts for ``records``: ``images``, ``tasks`` (records labelled per task), and where they apply
    ``objects``, ``difficult``, ``truncated``, ``classes`` ({name: {objects, images, pixels, ...}}, present
    classes only), ``annotators`` (total annotations, BSDS) and the pixel counts of :class:`_Pixels`.

    Args:
        pixels: read every sample (with ``read``, default ``read_sample``) for pixel-level counts.
        skip_bad: with ``pixels``, a sample that fails to read is counted in ``report`` instead of raising;
            it is then left out of every count (``images`` included).
        progress: wraps the record iterator (e.g. ``tqdm``) while reading pixels.
    """
    if read is None:
        from ubernet.data.readers import read_sample as read
    report = report if report is not None else ReaderReport()
    px = _Pixels()
    kept: list[Record] = []
    if pixels:
        for r in progress(records) if progress is not None else records:
            try:
                px.add(read(r))
            except DataError as e:
                if not skip_bad:
                    raise
                report.add(r.image_path, str(e))
                continue
            kept.append(r)
    else:
        kept = list(records)
    tasks = Counter(t for r in kept for t in r.tasks)
    out: dict[str, Any] = {
        "images": len(kept),
        "sources": dict(Counter(r.source for r in kept)),
        "tasks": {t: tasks[t] for t in [*TASK_FIELDS, *sorted(set(tasks) - set(TASK_FIELDS))] if tasks[t]},
    }
    classes: dict[str, dict[str, int]] = {}
    boxed = [r for r in kept if "boxes" in r.fields]
    if boxed:
        out["objects"] = int(sum(len(r.fields["boxes"]) for r in boxed))
        out["difficult"] = int(sum(int(np.sum(r.fields["difficult"])) for r in boxed))
        if any("truncated" in r.fields for r in boxed):
            out["truncated"] = int(sum(int(np.sum(r.fields.get("truncated", 0))) for r in boxed))
        for r in boxed:
            names = r.meta.get("class_names")
            labels = np.asarray(r.fields["labels"]).tolist()
            for lab in labels:
                classes.setdefault(_class_name(names, lab), {}).setdefault("objects", 0)
                classes[_class_name(names, lab)]["objects"] += 1
            for lab in set(labels):
                c = classes[_class_name(names, lab)]
                c["images"] = c.get("images", 0) + 1
    if pixels:
        out.update(px.to_dict())
        for name, n in px.class_pixels.items():
            c = classes.setdefault(name, {})
            c["pixels"] = n
            c["pixel_images"] = px.class_images[name]
        for name, n in px.sb_pixels.items():
            classes.setdefault(name, {})["boundary_pixels"] = n
    if classes:
        out["classes"] = dict(sorted(classes.items()))
    out["skipped"] = [{"path": s.path, "problem": s.problem} for s in report.skipped]
    return out
