"""The Python API the CLI is a thin layer over: config -> model, data union, update rule, trainer.

This is the one place where configuration becomes constructor arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ubernet.config import Config, SourceConfig
from ubernet.data.sample import Sample
from ubernet.data.transforms import Augment, AugmentedDataset, bind_augmentations
from ubernet.data.union import UnionEntry, UnionSampler, validate_union
from ubernet.errors import ConfigError
from ubernet.hardware import resolve_precision
from ubernet.models.ubernet import UberNet
from ubernet.tasks.base import build_task, discover_tasks, task_names
from ubernet.tasks.dense import LabelTask, median_frequency_weights
from ubernet.train.allocator import retain_freed_memory
from ubernet.train.async_sgd import AsyncSGD, GroupSpec, Schedule, expected_group_updates
from ubernet.train.distributed import env_world_size
from ubernet.train.engine import Trainer
from ubernet.train.weighting import UncertaintyWeighting


# --- data ------------------------------------------------------------------------------------------------------
class RecordDataset:
    """Reader records as an indexable dataset of :class:`Sample` (pixels read on access)."""

    def __init__(self, records: Sequence[Any], name: str) -> None:
        self.records = list(records)
        self.name = name

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> Sample:
        from ubernet.data.readers import read_sample

        s = read_sample(self.records[i])
        s.source = s.source or self.name
        return s


def build_source(sc: SourceConfig) -> tuple[Any, tuple[str, ...], list[str] | None]:
    """(dataset, tasks it labels, class names or None) for one configured source."""
    if sc.kind == "synth":
        from ubernet.data.synth import CLASSES, SOURCES, SynthDataset

        if sc.source not in SOURCES:
            raise ConfigError(f"synthetic source {sc.source!r} unknown; valid: {', '.join(SOURCES)}")
        ds = SynthDataset(source=sc.source, n=sc.n, seed=sc.seed, size=(sc.size[0], sc.size[1]))
        tasks = SOURCES[sc.source].tasks
        names: list[str] | None = list(CLASSES)
    else:
        from ubernet.data.readers import load_dataset

        records = load_dataset(sc.kind, sc.root, sc.split, **sc.options)
        if not records:
            raise ConfigError(f"source {sc.name or sc.kind!r}: no images found under {sc.root} (split {sc.split})")
        ds = RecordDataset(records, sc.name or sc.kind)
        tasks = tuple(dict.fromkeys(t for r in records for t in r.tasks))
        names = records[0].meta.get("class_names")
    if sc.tasks is not None:
        extra = [t for t in sc.tasks if t not in tasks]
        if extra:
            raise ConfigError(f"source {sc.name or sc.kind!r} does not label {extra}; it labels {list(tasks)}")
        tasks = tuple(sc.tasks)
        ds = _Restricted(ds, tasks)
    return ds, tuple(tasks), names


class _Restricted:
    def __init__(self, ds: Any, tasks: tuple[str, ...]) -> None:
        self.ds, self.tasks = ds, tasks

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> Sample:
        return self.ds[i].restrict(self.tasks)


def build_union(cfg: Config) -> tuple[list[UnionEntry], dict[str, list[str]]]:
    """The configured training union (validated) and, per task, class names found in the data."""
    entries, class_names = [], {}
    for i, sc in enumerate(cfg.data):
        ds, tasks, names = build_source(sc)
        name = sc.name or f"{sc.kind}-{sc.source if sc.kind == 'synth' else i}"
        augment = Augment.from_config(sc.augment, f"data[{i}].augment")
        if augment.active:  # randomness per (seed, source, item, draw): see AugmentedDataset
            ds = AugmentedDataset(ds, augment, seed=cfg.seed, name=name)
        entries.append(UnionEntry(name=name, dataset=ds, tasks=tasks, weight=sc.weight))
        for t in tasks:
            if names and t not in class_names:
                class_names[t] = names
    validate_union(entries, list(cfg.tasks), task_names())
    return entries, class_names


# --- model -----------------------------------------------------------------------------------------------------
#: images read per source (evenly spaced over it) to estimate class frequencies for ``median_frequency``
FREQUENCY_IMAGES = 100


def label_pixel_counts(entries: Sequence[UnionEntry], task: LabelTask,
                       images: int = FREQUENCY_IMAGES) -> tuple[np.ndarray, np.ndarray]:
    """Per class: labelled pixels, and labelled pixels of the images where the class occurs (both ``(C,)``), over
    ``images`` evenly spaced images of every source labelling ``task``, each source weighted by its share of the
    union's draws (label 255 ignored; augmentation not applied). Labels are read, and range-checked, by the task
    itself (:meth:`LabelTask.target_tensor`)."""
    class_px, image_px = np.zeros(task.num_classes), np.zeros(task.num_classes)
    for e in entries:
        if task.name not in e.tasks or len(e.dataset) == 0:
            continue
        ds = e.dataset.dataset if isinstance(e.dataset, AugmentedDataset) else e.dataset
        idx = np.unique(np.linspace(0, len(ds) - 1, min(images, len(ds))).round().astype(int))
        for i in idx:
            lab = task.target_tensor(ds[int(i)]).flatten()
            lab = lab[lab != 255]
            counts = torch.bincount(lab, minlength=task.num_classes).numpy()
            share = e.weight / len(idx)
            class_px += share * counts
            image_px += share * lab.numel() * (counts > 0)
    return class_px, image_px


def resolve_task_options(cfg: Config, class_names: dict[str, list[str]],
                         entries: Sequence[UnionEntry] = ()) -> dict[str, dict[str, Any]]:
    """Task options with ``num_classes: auto`` (or missing, where required) filled in from the data, and
    ``class_weights: median_frequency`` replaced by the weights estimated from ``entries`` (the union)."""
    out = {}
    for name, opts in cfg.tasks.items():
        opts = dict(opts or {})
        names = class_names.get(name)
        if opts.get("num_classes", "auto") == "auto" and name in ("semseg", "semantic_boundaries", "detection"):
            if names is None:
                raise ConfigError(f"tasks.{name}.num_classes: 'auto' needs a source with class names; set it")
            # semseg counts background; semantic boundaries and detection count object classes only
            opts["num_classes"] = len(names) if name == "semseg" else len(names) - 1
            if name == "detection":
                opts.setdefault("class_names", list(names[1:]))
        if opts.get("class_weights") == "median_frequency":
            cls = discover_tasks().get(name)
            if cls is None or not issubclass(cls, LabelTask):
                raise ConfigError(f"tasks.{name}.class_weights: only label tasks (semseg, parts) take class weights")
            if not any(name in e.tasks for e in entries):
                raise ConfigError(f"tasks.{name}.class_weights: 'median_frequency' needs a training source "
                                  f"labelling {name}")
            plain = build_task(name, **{**opts, "class_weights": None})  # validated, defaults filled in
            assert isinstance(plain, LabelTask)
            opts["class_weights"] = median_frequency_weights(*label_pixel_counts(entries, plain))
        out[name] = opts
    return out


def build_model(cfg: Config, task_options: dict[str, dict[str, Any]] | None = None) -> UberNet:
    """The UberNet described by ``cfg.model`` and ``cfg.tasks`` (options resolved beforehand)."""
    from ubernet.models.trunks import build_trunk

    trunk = build_trunk(cfg.model.trunk, **cfg.model.trunk_options)
    if cfg.model.pretrained:
        from ubernet.models.weights import load_pretrained

        report = load_pretrained(trunk, cfg.model.pretrained)
        print(report.summary())
    opts = task_options if task_options is not None else {k: dict(v or {}) for k, v in cfg.tasks.items()}
    tasks = {name: build_task(name, **o) for name, o in opts.items()}
    return UberNet(trunk=trunk, tasks=tasks, scales=cfg.model.scales, tap_norm=cfg.model.tap_norm,
                   checkpoint_segments=cfg.model.checkpoint_segments, stem_tap=cfg.model.stem_tap)


# --- optimisation ----------------------------------------------------------------------------------------------
def expected_updates(cfg: Config, entries: Sequence[UnionEntry], group: str, batch: int, world_size: int = 1) -> int:
    """How many updates a group will take over the run (the horizon of its schedule).

    Every step (a round of ``world_size`` draws when distributed) hands the rule ``batch_size`` samples per draw;
    each is labelled for the group with its sources' share of the union's weight, and the group steps at most
    once per step (:func:`~ubernet.train.async_sgd.expected_group_updates`).
    """
    total = sum(e.weight for e in entries)
    frac = 1.0 if group == "trunk" else sum(e.weight for e in entries if group in e.tasks) / total
    world = max(int(world_size), 1)
    calls = -(-cfg.train.steps // world)
    return max(1, round(expected_group_updates(calls, cfg.train.batch_size * world, frac, batch)))


def build_rule(cfg: Config, model: UberNet, entries: Sequence[UnionEntry],
               weighting: UncertaintyWeighting | None = None) -> AsyncSGD:
    """The asynchronous rule: group ``trunk`` (trunk + tap norms) and one group per task."""
    t = cfg.train
    groups = []
    members: dict[str, list[torch.nn.Parameter]] = {
        "trunk": model.shared_parameters()}
    for name in model.tasks:
        ps = [p for p in model.heads[name].parameters() if p.requires_grad]
        if weighting is not None:
            ps.append(weighting.log_vars[name])
        members[name] = ps
    unknown = [g for g in t.groups if g not in members]
    if unknown:
        raise ConfigError(f"train.groups: unknown group(s) {unknown}; groups: {', '.join(members)}")
    for name, params in members.items():
        over = t.groups.get(name)
        b = t.batch_sizes.get(name, t.batch_sizes.get("default", 10))
        b = over.batch_size if over and over.batch_size else b
        lr = t.lr * (t.trunk_lr_mult if name == "trunk" else 1.0)
        lr = over.lr if over and over.lr is not None else lr
        n_up = expected_updates(cfg, entries, name, b, env_world_size())
        sc = t.schedule
        schedule = Schedule(kind=sc.kind, max_updates=n_up, power=sc.power, gamma=sc.gamma,
                            milestones=[round(m * n_up) for m in sc.milestones],
                            warmup=round(sc.warmup * n_up), warmup_factor=sc.warmup_factor)
        groups.append(GroupSpec(
            name=name, params=params, batch_size=b, lr=lr, schedule=schedule, rule=t.rule,
            momentum=over.momentum if over and over.momentum is not None else t.momentum,
            weight_decay=over.weight_decay if over and over.weight_decay is not None else t.weight_decay))
    return AsyncSGD(groups)


def size_divisor(model: UberNet) -> int:
    """Pad batches to a multiple of the coarsest tap stride, so every full-scale tap covers the padded image
    exactly and upsampled score maps align with pixels (outputs are cropped back to each image's size)."""
    return max(t.stride for t in model.trunk.taps)


def build_trainer(cfg: Config, hooks: Sequence[Any] = ()) -> tuple[Trainer, dict[str, dict[str, Any]]]:
    """Everything for training from a config: (trainer, resolved task options)."""
    if cfg.train.allocator == "retain":
        retain_freed_memory()  # process-wide: glibc keeps freed memory mapped (ubernet.train.allocator)
    torch.manual_seed(cfg.seed)
    entries, class_names = build_union(cfg)
    task_opts = resolve_task_options(cfg, class_names, entries)
    model = build_model(cfg, task_opts)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    weighting = UncertaintyWeighting(list(model.tasks)) if cfg.train.weighting == "uncertainty" else None
    rule = build_rule(cfg, model, entries, weighting)
    sampler = UnionSampler(entries, seed=cfg.seed, batch_size=cfg.train.batch_size)
    bind_augmentations(sampler)  # augmented sources take their draw counts from the (checkpointed) sampler
    if cfg.train.prefetch > 0:
        sampler.prefetch(cfg.train.prefetch)  # same draws, loaded ahead in a background process
    trainer = Trainer(model=model, rule=rule, sampler=sampler, backward=cfg.train.backward,
                      combine=cfg.train.combine, weighting=weighting,
                      bf16=resolve_precision(cfg.train.precision).bf16,
                      size_divisor=size_divisor(model), hooks=hooks, seed=cfg.seed, ema=cfg.train.ema,
                      max_skipped_in_a_row=cfg.train.max_skipped_in_a_row)
    return trainer, task_opts
