"""The synthetic world: procedural scenes with exact ground truth for all seven tasks.

Public API: :data:`CLASSES`, :data:`NUM_CLASSES`, :data:`SOURCES` (name -> :class:`SourceSpec`),
:func:`generate`, :class:`SynthDataset`, :class:`SynthUnion`, :func:`derived_seed`, :func:`write_samples`,
:func:`write_summary`, :func:`read_samples`. The rules (camera, boundaries, saliency, difficult) are in
``docs/synthetic-world.md`` and in the docstrings of :mod:`.labels` and :mod:`.render`.
"""

from __future__ import annotations

from ubernet.data.synth.classes import CLASSES, NUM_CLASSES, PERSON
from ubernet.data.synth.dataset import SynthDataset, SynthUnion, derived_seed, make_dataset, parse_mix
from ubernet.data.synth.sources import SOURCES, SourceSpec, Style, get_source
from ubernet.data.synth.summary import write_summary
from ubernet.data.synth.world import DIFFICULT_BELOW, MIN_SIZE, generate
from ubernet.data.synth.writer import read_sample, read_samples, write_sample, write_samples

__all__ = [
    "CLASSES",
    "DIFFICULT_BELOW",
    "MIN_SIZE",
    "NUM_CLASSES",
    "PERSON",
    "SOURCES",
    "SourceSpec",
    "Style",
    "SynthDataset",
    "SynthUnion",
    "derived_seed",
    "generate",
    "get_source",
    "make_dataset",
    "parse_mix",
    "read_sample",
    "read_samples",
    "write_sample",
    "write_samples",
    "write_summary",
]
