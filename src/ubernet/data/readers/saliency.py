"""Salient-object sets: an image folder and a mask folder, matched by file stem.

Recognised layouts under ``root`` (first match wins), or any pair given as ``images=DIR, masks=DIR``:

===========================  =========================================  ===================================
set                          images                                      masks
===========================  =========================================  ===================================
generic                      ``images/``                                 ``masks/``
DUTS                         ``DUTS-TR-Image/`` (``DUTS-TE-Image/``)     ``DUTS-TR-Mask/`` (``DUTS-TE-Mask/``)
PASCAL-S                     ``datasets/imgs/pascal/``                   ``datasets/masks/pascal/``
MSRA-10K                     ``Imgs/*.jpg``                              ``Imgs/*.png`` (same folder)
SOD / ECSSD / others         ``Imgs/``, ``imgs/``, ``images/``, ``img/``  ``GT/``, ``gt/``, ``masks/``,
                                                                         ``ground_truth_mask/``
===========================  =========================================  ===================================

Masks are binarised: salient (1) where the value exceeds half the range (> 127 for 8-bit masks, > 0.5 for 0/1
masks); for binary 0/255 masks this is "non-zero = salient", and for PASCAL-S's non-binary masks (the fraction of
observers) it is the usual 0.5 threshold. ``threshold`` changes the fraction.

Splits: ``all`` (every image with a mask), or ``<root>/<split>.txt`` (one id per line), or ``split_file=``.
"""

from __future__ import annotations

from pathlib import Path

from ubernet.data.readers.base import (
    ReaderReport,
    Record,
    binarise_mask,
    check_size,
    finish_sample,
    guarded_records,
    read_id_list,
    stems,
    unknown_split,
)
from ubernet.data.sample import Sample
from ubernet.errors import DataError
from ubernet.io.images import read_gray, read_image

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
MASK_EXTS = (".png", ".bmp", ".jpg", ".tif", ".tiff", ".gif")

#: (image folder, mask folder) relative to root, in the order tried
LAYOUTS: tuple[tuple[str, str], ...] = (
    ("images", "masks"),
    ("DUTS-TR-Image", "DUTS-TR-Mask"),
    ("DUTS-TE-Image", "DUTS-TE-Mask"),
    ("datasets/imgs/pascal", "datasets/masks/pascal"),
    ("Imgs", "GT"),
    ("imgs", "gt"),
    ("images", "GT"),
    ("images", "gt"),
    ("img", "gt"),
    ("Image", "GT"),
    ("images", "ground_truth_mask"),
    ("Imgs", "Imgs"),
)


def find_saliency_folders(root: Path) -> tuple[Path, Path]:
    """The (image folder, mask folder) of a saliency set under ``root`` (see LAYOUTS)."""
    for img, msk in LAYOUTS:
        if (root / img).is_dir() and (root / msk).is_dir():
            return root / img, root / msk
    tried = ", ".join(f"{a}/ + {b}/" for a, b in LAYOUTS)
    raise DataError(f"{root}: no saliency layout found (tried {tried}); pass images=DIR and masks=DIR")


def load_saliency(
    root: str | Path | None = None,
    split: str = "all",
    *,
    images: str | Path | None = None,
    masks: str | Path | None = None,
    split_file: str | Path | None = None,
    threshold: float = 0.5,
    skip_bad: bool = False,
    report: ReaderReport | None = None,
    source: str | None = None,
) -> list[Record]:
    """Records labelled for ``saliency``: every image that has a mask of the same stem.

    Args:
        root: the set's folder (layout detected), or ``None`` when ``images`` and ``masks`` are given.
        split: ``all`` or the stem of a ``<root>/<split>.txt`` id list.
        images, masks: explicit folders (override the detected layout), e.g. BSDS images + SOD masks.
        split_file: an explicit id list (overrides ``split``).
        threshold: fraction of the mask range above which a pixel is salient.
        source: dataset name (default: the root folder name, or the mask folder's parent name).

    Record fields: ``mask`` (path); meta ``threshold``. Images without a mask are not listed.
    """
    root_p = Path(root) if root is not None else None
    if images is None or masks is None:
        if root_p is None:
            raise DataError("saliency: give a root folder, or both images=DIR and masks=DIR")
        img_dir, msk_dir = find_saliency_folders(root_p)
        img_dir = Path(images) if images is not None else img_dir
        msk_dir = Path(masks) if masks is not None else msk_dir
    else:
        img_dir, msk_dir = Path(images), Path(masks)
    for d, what in ((img_dir, "image"), (msk_dir, "mask")):
        if not d.is_dir():
            raise DataError(f"{d}: {what} folder not found")
    imgs = stems(img_dir, IMAGE_EXTS)
    mask_exts = MASK_EXTS if img_dir != msk_dir else (".png",)  # MSRA-10K: .jpg images, .png masks together
    msks = stems(msk_dir, mask_exts)
    if img_dir == msk_dir:
        imgs = {k: v for k, v in imgs.items() if v.suffix.lower() != ".png"}
    if split_file is not None:
        ids = read_id_list(Path(split_file))
    elif split == "all":
        ids = [i for i in imgs if i in msks]
    else:
        base = root_p if root_p is not None else msk_dir.parent
        f = base / f"{split}.txt"
        if not f.is_file():
            raise unknown_split(base, split, ["all", *(p.stem for p in base.glob("*.txt"))], "all, <root>/*.txt")
        ids = read_id_list(f)
    if not ids:
        raise DataError(f"{msk_dir}: no mask matches an image of {img_dir} by file stem")
    generic = {m.split("/")[-1].lower() for _, m in LAYOUTS} | {"mask", "masks", "gt"}
    named = msk_dir.parent if msk_dir.name.lower() in generic else msk_dir  # sod/masks -> sod
    src = source or (root_p.name if root_p is not None else named.name) or "saliency"

    def make(id_: str) -> Record:
        if id_ not in imgs or id_ not in msks:
            missing = img_dir / id_ if id_ not in imgs else msk_dir / id_
            raise DataError(f"{missing}.*: {'image' if id_ not in imgs else 'mask'} of {id_} not found")
        return Record(
            id=id_,
            source=src,
            image_path=imgs[id_],
            tasks=("saliency",),
            fields={"mask": msks[id_]},
            meta={"threshold": threshold},
            format="saliency",
        )

    return guarded_records(ids, make, lambda id_: msk_dir / id_, skip_bad=skip_bad, report=report)


def read_saliency_sample(record: Record) -> Sample:
    """Pixels and the binarised ``saliency`` mask (uint8 0/1) of a saliency record."""
    image = read_image(record.image_path)
    mask_path = record.fields["mask"]
    gray = read_gray(mask_path)
    check_size(gray, image.shape[:2], mask_path, "mask")
    return finish_sample(record, image, {"saliency": binarise_mask(gray, float(record.meta.get("threshold", 0.5)))})
