"""Join records of different datasets that describe the same image file into one partially labelled record.

Example: BSDS500 train images carry boundaries, and the SOD masks label the same files for saliency; merged,
each image becomes one sample labelled for both tasks (one forward pass instead of two).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ubernet.data.readers.base import Record, finish_sample, known_tasks
from ubernet.data.sample import Sample
from ubernet.errors import DataError

MERGED_FORMAT = "merged"


def merge_records(*record_lists: Sequence[Record], source: str | None = None) -> list[Record]:
    """Records grouped by image file (resolved path), in first-seen order.

    An image seen once keeps its record. An image seen in several records gets one record of format
    ``"merged"`` labelled for the union of their tasks; where two records give the same target field, the
    earlier list wins. ``source`` defaults to the sources joined with ``+`` (e.g. ``bsds500+sod``).
    """
    groups: dict[Path, list[Record]] = {}
    for records in record_lists:
        for r in records:
            groups.setdefault(Path(r.image_path).resolve(), []).append(r)
    out: list[Record] = []
    for rs in groups.values():
        if len(rs) == 1:
            out.append(rs[0])
            continue
        tasks = known_tasks(t for r in rs for t in r.tasks)
        meta: dict = {}
        for r in reversed(rs):  # earlier records win
            meta.update(r.meta)
        src = source or "+".join(dict.fromkeys(r.source for r in rs))
        out.append(
            Record(
                id=rs[0].id,
                source=src,
                image_path=rs[0].image_path,
                tasks=tasks,
                fields={"records": rs},
                meta=meta,
                format=MERGED_FORMAT,
            )
        )
    return out


def read_merged_sample(record: Record) -> Sample:
    """Read every part of a merged record and join their targets (earlier parts win on a shared task)."""
    from ubernet.data.readers import read_sample

    parts = [read_sample(r) for r in record.fields["records"]]
    image = parts[0].image
    targets: dict = {}
    meta: dict = {}
    for r, s in zip(record.fields["records"], parts):
        if s.size != parts[0].size:
            raise DataError(
                f"{record.image_path}: read as {s.size} by {r.source} but {parts[0].size} by "
                f"{record.fields['records'][0].source}"
            )
        for name, value in s.targets.items():  # per field, earlier parts win
            targets.setdefault(name, value)
        meta = {**s.meta, **meta}
    sample = finish_sample(record, image, targets)
    sample.meta.update({k: v for k, v in meta.items() if k not in sample.meta})
    return sample
