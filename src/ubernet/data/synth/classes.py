"""Class vocabulary of the synthetic world (index = class id in ``semseg`` and ``labels``)."""

from __future__ import annotations

#: Class names in id order; 0 is the background (planar regions), the rest are object classes that differ by
#: shape only (colours and textures are drawn at random per instance).
CLASSES: tuple[str, ...] = (
    "background",
    "sphere",
    "cube",
    "cylinder",
    "cone",
    "pyramid",
    "star",
    "capsule",
    "ring",
    "person",
)

NUM_CLASSES: int = len(CLASSES)

#: Class id of the articulated person (the only class with ``parts``).
PERSON: int = CLASSES.index("person")
