"""Data of the real benchmark: the BSDS500-train + SOD partial-label union, the saliency hold-out, the val set.

``DIR`` is laid out like ``shared/data`` (see its README): ``bsds500/{images,groundTruth}/{train,val}`` and
``sod/masks/<id>.png`` for the 200 train images. Everything is read with the project's readers.

Hold-out: ``n`` train images (fixed seed, listed in ``OUT/holdout.txt``) evaluate saliency. With
``holdout_boundaries=False`` (the default) they are left out of training entirely — their pixels are never seen,
so the saliency figure is a clean held-out figure. With ``True`` their boundaries still train (more boundary data:
200 instead of 160 images) while their masks do not; the union then also has boundary-only samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ubernet.api import RecordDataset
from ubernet.config import Config
from ubernet.data.readers import Record, load_bsds500, load_dataset, merge_records
from ubernet.data.transforms import Augment, AugmentedDataset
from ubernet.data.union import UnionEntry
from ubernet.errors import ConfigError, DataError

UNION_NAME = "bsds500+sod-train"


def check_layout(data: Path) -> None:
    """Clear errors for a ``--data`` folder that is not laid out like ``shared/data``."""
    need = [data / "bsds500" / "images" / "train", data / "bsds500" / "images" / "val",
            data / "bsds500" / "groundTruth" / "val", data / "sod" / "masks"]
    missing = [str(p) for p in need if not p.is_dir()]
    if missing:
        raise DataError(f"{data}: not laid out like shared/data (see its README); missing: {', '.join(missing)}")


def choose_holdout(ids: list[str], n: int, seed: int) -> list[str]:
    """``n`` ids drawn without replacement with a fixed seed, sorted."""
    if not 0 <= n < len(ids):
        raise ConfigError(f"--holdout {n}: must be in 0..{len(ids) - 1} ({len(ids)} images have a saliency mask)")
    rng = np.random.default_rng(seed)
    return sorted(str(i) for i in rng.choice(sorted(ids), size=n, replace=False))


def source_records(cfg: Config) -> list[tuple[str, list[Record]]]:
    """(configured task list, records) of each configured training source (paths already substituted)."""
    out = []
    for i, sc in enumerate(cfg.data):
        if sc.kind == "synth":
            raise ConfigError(f"data[{i}]: the real benchmark reads real sources, not synth")
        records = load_dataset(sc.kind, sc.root, sc.split, **sc.options)
        if not records:
            raise DataError(f"data[{i}] ({sc.kind}): no images under {sc.root}")
        out.append((sc.name or sc.kind, records))
    return out


def training_union(cfg: Config, holdout: list[str], *, holdout_boundaries: bool) -> tuple[UnionEntry, dict[str, Any]]:
    """One union entry: the configured sources' records joined per image (``merge_records``: one sample labelled
    for boundaries and saliency, so one forward pass trains both), minus the hold-out, augmented as configured.

    The configured sources must share one ``augment`` (the merged source is augmented as a whole).
    """
    augments = {str(sorted(sc.augment.items())) for sc in cfg.data}
    if len(augments) > 1:
        raise ConfigError("the merged union takes one augmentation: give every data[*] the same augment")
    held = set(holdout)
    lists = []
    for _name, records in source_records(cfg):
        saliency_only = all(r.tasks == ("saliency",) for r in records)
        drop = held if (saliency_only or not holdout_boundaries) else set()
        lists.append([r for r in records if r.id not in drop])
    merged = merge_records(*lists, source=UNION_NAME)
    tasks = tuple(dict.fromkeys(t for r in merged for t in r.tasks))
    ds: Any = RecordDataset(merged, UNION_NAME)
    augment = Augment.from_config(cfg.data[0].augment, "data[0].augment")
    if augment.active:
        ds = AugmentedDataset(ds, augment, seed=cfg.seed, name=UNION_NAME)
    counts = {"images": len(merged)}
    for t in tasks:
        counts[t] = sum(t in r.tasks for r in merged)
    return UnionEntry(name=UNION_NAME, dataset=ds, tasks=tasks, weight=1.0), counts


def saliency_ids(cfg: Config) -> list[str]:
    """Ids of every image with a saliency mask among the configured sources."""
    return sorted({r.id for _, recs in source_records(cfg) for r in recs if "saliency" in r.tasks})


def val_records(data: Path) -> list[Record]:
    """BSDS500 val: boundaries with every annotator (for the benchmark), no saliency."""
    return load_bsds500(data / "bsds500", "val")


def holdout_records(data: Path, holdout: list[str]) -> list[Record]:
    """The held-out train images with their SOD masks (saliency evaluation)."""
    from ubernet.data.readers import load_saliency

    recs = load_saliency(images=data / "bsds500" / "images" / "train", masks=data / "sod" / "masks", source="sod")
    keep = set(holdout)
    return [r for r in recs if r.id in keep]
