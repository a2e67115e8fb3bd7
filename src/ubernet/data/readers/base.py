"""What every dataset reader returns: light :class:`Record` s, plus a :class:`ReaderReport` of skipped items.

A reader ``load_<format>(root, split, *, skip_bad=False, report=None, ...) -> list[Record]`` lists the images
of a split and parses only light annotations (file paths, VOC boxes, COCO JSON entries), so listing 10k images
is fast. Pixels are loaded by ``read_sample(record)``, which builds every target field in the format of
:mod:`ubernet.data.sample` and validates it.

Malformed input raises :class:`~ubernet.errors.DataError` naming the file and the problem. With
``skip_bad=True`` the offending image is left out instead and the problem is appended to ``report`` (pass a
:class:`ReaderReport` to see it; ``ubernet data stats --skip-bad`` prints it at the end).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ubernet.data.sample import IGNORE, PAPER_TASKS, TASK_FIELDS, Sample, validate_sample
from ubernet.errors import DataError

T = TypeVar("T")


@dataclass
class Record:
    """One image of a dataset and where its annotations are; no pixel arrays.

    Attributes:
        id: identifier unique within ``source`` (usually the file stem).
        source: dataset name, e.g. ``"voc2012"``, ``"bsds500"``.
        image_path: the image file (for NYUD's labelled ``.mat`` the ``.mat`` itself).
        tasks: the tasks ``read_sample`` will label this image for: paper tasks in :data:`PAPER_TASKS` order,
            then optional tasks (``depth``) when registered (see :func:`known_tasks`).
        fields: annotation file paths and already-parsed light annotations (VOC/COCO boxes as arrays).
        meta: extras copied into ``Sample.meta``; always has ``"class_names"`` when the dataset has classes.
        format: the key of ``SAMPLE_READERS`` that ``read_sample`` uses (a ``READERS`` format, or ``"merged"``).
    """

    id: str
    source: str
    image_path: Path
    tasks: tuple[str, ...]
    fields: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    format: str = ""


@dataclass
class Skip:
    """One skipped image: the file at fault and the problem."""

    path: str
    problem: str


@dataclass
class ReaderReport:
    """Problems skipped under ``skip_bad=True`` (in the order met)."""

    skipped: list[Skip] = field(default_factory=list)

    def add(self, path: str | Path, problem: str) -> None:
        self.skipped.append(Skip(str(path), problem))

    def __len__(self) -> int:
        return len(self.skipped)

    def lines(self) -> list[str]:
        """One readable line per skip."""
        return [s.problem if s.problem.startswith(s.path) else f"{s.path}: {s.problem}" for s in self.skipped]


def known_tasks(names: Iterable[str]) -> tuple[str, ...]:
    """The task names among ``names`` that are registered in ``TASK_FIELDS`` now, paper tasks first.

    Optional tasks such as ``depth`` are listed in ``Record.tasks`` only once their task file has registered
    them; their target fields are loaded either way (``Sample.has`` looks at the fields).
    """
    names = set(names)
    order = [*PAPER_TASKS, *(t for t in TASK_FIELDS if t not in PAPER_TASKS)]
    return tuple(t for t in order if t in names and t in TASK_FIELDS)


def guarded(fn: Callable[[], T], *, skip_bad: bool, report: ReaderReport | None, path: str | Path) -> T | None:
    """Run ``fn``; on DataError re-raise, or with ``skip_bad`` record the problem and return ``None``."""
    try:
        return fn()
    except DataError as e:
        if not skip_bad:
            raise
        if report is not None:
            report.add(path, str(e))
        return None


def guarded_records(
    items: Iterable[T],
    make: Callable[[T], Record],
    path_of: Callable[[T], str | Path],
    *,
    skip_bad: bool,
    report: ReaderReport | None,
) -> list[Record]:
    """``make(item)`` for each of ``items`` under :func:`guarded`: the records of the good items, in order.

    ``path_of(item)`` names the file a skip is reported against. It is computed before ``make`` runs and outside
    the guard: an item too malformed to be named (say a COCO image entry that is not an object) is an error even
    under ``skip_bad``, since there would be nothing to report the skip against.
    """
    records: list[Record] = []
    for item in items:
        path = path_of(item)
        rec = guarded(partial(make, item), skip_bad=skip_bad, report=report, path=path)
        if rec is not None:
            records.append(rec)
    return records


def task_paths(found: dict[str, list[dict[str, Path]]], id_: str) -> dict[str, Path]:
    """``{task: path}`` for the tasks of ``found`` that have a file for ``id_``, in the order of ``found``.

    ``found`` maps a task to the ``{stem: path}`` listings (see :func:`stems`) of its candidate folders, in
    preference order: the first folder that lists ``id_`` wins.
    """
    fields: dict[str, Path] = {}
    for task, listings in found.items():
        p = next((m[id_] for m in listings if id_ in m), None)
        if p is not None:
            fields[task] = p
    return fields


def read_id_list(path: Path) -> list[str]:
    """Ids from an image-set file: first whitespace-separated token of each non-empty line, file extension
    dropped (so both ``2008_000002`` and ``images/2008_000002.jpg`` lines work)."""
    try:
        text = path.read_text()
    except OSError as e:
        raise DataError(f"{path}: cannot read image-set file ({e})") from None
    ids = []
    for line in text.splitlines():
        tok = line.split()
        if tok:
            ids.append(Path(tok[0]).stem if "." in Path(tok[0]).name else Path(tok[0]).name)
    return ids


def unknown_split(root: str | Path, split: str, found: Iterable[str], where: str) -> DataError:
    """The error for a split that is not on disk, listing the splits that are."""
    names = sorted(set(found))
    return DataError(
        f"{root}: unknown split {split!r}; splits found on disk ({where}): {', '.join(names) if names else 'none'}"
    )


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DataError(f"{path}: {what} folder not found")
    return path


def stems(folder: Path, exts: Sequence[str]) -> dict[str, Path]:
    """``{stem: path}`` for the files of ``folder`` with one of ``exts`` (lower-case, with dot); first ext wins."""
    out: dict[str, Path] = {}
    if not folder.is_dir():
        return out
    rank = {e: i for i, e in enumerate(exts)}
    for p in sorted(folder.iterdir()):
        e = p.suffix.lower()
        if e in rank and p.is_file() and (p.stem not in out or rank[e] < rank[out[p.stem].suffix.lower()]):
            out[p.stem] = p
    return out


def check_size(
    a: np.ndarray, hw: tuple[int, int], path: str | Path, what: str, *, channels_first: bool = False
) -> None:
    """DataError naming ``path`` when the spatial size of ``a`` (``H×W``, ``H×W×C``, or with
    ``channels_first`` ``C×H×W``) differs from ``hw``."""
    got = tuple(a.shape[-2:]) if channels_first else tuple(a.shape[:2])
    if got != tuple(hw):
        raise DataError(f"{path}: {what} is {got[0]}×{got[1]} but the image is {hw[0]}×{hw[1]} (H×W)")


def check_ids(labels: np.ndarray, max_id: int, path: str | Path, what: str = "label") -> None:
    """DataError naming ``path`` when ``labels`` holds ids outside ``0..max_id`` other than 255 (ignore)."""
    bad = (labels > max_id) & (labels != IGNORE)
    if bad.any():
        ids = sorted({int(v) for v in np.unique(labels[bad])})
        raise DataError(f"{path}: {what} ids {ids[:10]} are out of range (valid: 0..{max_id} and 255 = ignore)")


def finish_sample(record: Record, image: np.ndarray, targets: dict[str, np.ndarray]) -> Sample:
    """Wrap the arrays into a validated Sample (ValueError from the contract check becomes a DataError)."""
    meta = dict(record.meta)
    meta.setdefault("image_path", str(record.image_path))
    sample = Sample(image=image, targets=targets, id=record.id, source=record.source, meta=meta)
    try:
        validate_sample(sample, where=str(record.image_path))
    except ValueError as e:
        raise DataError(str(e)) from None
    return sample


def load_npy(p: Path) -> np.ndarray:
    """The array of a ``.npy`` file (no pickled objects); DataError naming the file when it cannot be read."""
    try:
        return np.load(p, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:  # a 0-byte file raises EOFError
        raise DataError(f"{p}: unreadable .npy ({e or 'empty file'})") from None


def valid_depth(d: np.ndarray) -> np.ndarray:
    """float32 depth in the contract's form: non-finite or non-positive values (no measurement) become 0."""
    return np.where(np.isfinite(d) & (d > 0), d, 0.0).astype(np.float32)


def binarise_mask(gray: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """uint8 0/1 from a mask image: salient where ``value > threshold × range``.

    The range is 255, except for masks stored as 0/1 values (max ≤ 1), whose range is 1 — so both 0/255 and
    0/1 binary masks read correctly, and non-binary (averaged, JPEG-compressed) masks are cut at half range.
    """
    top = 1.0 if gray.max(initial=0) <= 1 else 255.0
    return (gray.astype(np.float32) > threshold * top).astype(np.uint8)


def decode_normals_png(rgb: np.ndarray, sign: Sequence[float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """float32 ``H×W×3`` unit normals from an 8-bit RGB encoding ``n = 2·v/255 − 1`` (per channel ×``sign``).

    Pixels stored as (0, 0, 0) (the usual "no data" fill) and vectors of near-zero length become the all-zero
    invalid vector of the contract.
    """
    n = rgb[:, :, :3].astype(np.float32) * (2.0 / 255.0) - 1.0
    n *= np.asarray(sign, np.float32)
    return normalise_normals(n, invalid=(rgb[:, :, :3] == 0).all(axis=2))


def normalise_normals(n: np.ndarray, invalid: np.ndarray | None = None) -> np.ndarray:
    """Unit-length float32 normals; non-finite or near-zero vectors (and ``invalid`` pixels) set to 0."""
    n = np.nan_to_num(n.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    length = np.linalg.norm(n, axis=2, keepdims=True)
    bad = length[:, :, 0] < 1e-3
    if invalid is not None:
        bad |= invalid
    out = np.where(bad[:, :, None], 0.0, n / np.maximum(length, 1e-12)).astype(np.float32)
    return out
