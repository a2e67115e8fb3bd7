"""Configuration: YAML files validated on load into dataclasses, with dotted ``key=value`` overrides.

Errors name the offending key (``train.groups.trunk.lr``) and list the valid keys or values. The config is
translated into keyword arguments of the library's constructors in one place (``ubernet.api``).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ubernet.errors import ConfigError
from ubernet.hardware import PRECISIONS


@dataclass
class ModelConfig:
    trunk: str = "mobilenet_v2"  # vgg16 | resnet50 | mobilenet_v2
    trunk_options: dict[str, Any] = field(default_factory=dict)  # e.g. {output_stride: 16, width: 1.0}
    pretrained: str | None = None  # local weights file (torchvision .pth/.safetensors or Keras .h5); never downloaded
    scales: list[float] = field(default_factory=lambda: [1.0, 0.5, 0.25])  # image pyramid
    tap_norm: str = "bn"  # bn | none
    checkpoint_segments: int = 0  # trunk activation checkpointing (0 = off)
    stem_tap: int = 0  # channels of an extra full-resolution tap (for trunks without a stride-1 layer; 0 = off)


@dataclass
class SourceConfig:
    """One member of a data union: ``kind`` is ``synth`` or a reader format (voc, sbd, bsds500, ...)."""

    name: str = ""
    kind: str = "synth"
    weight: float = 1.0
    source: str = "full"  # synth: which synthetic source
    n: int = 100000  # synth: virtual size
    seed: int = 0  # synth: seed
    size: list[int] = field(default_factory=lambda: [128, 128])  # synth: H, W
    root: str | None = None  # readers: dataset root
    split: str | None = None  # readers: split
    options: dict[str, Any] = field(default_factory=dict)  # reader keyword options
    tasks: list[str] | None = None  # restrict to these tasks (default: all the source labels)
    # training-time augmentation, e.g. {flip: true, scale: [0.75, 1.25], crop: [320, 320]} (ubernet.data.transforms)
    augment: dict[str, Any] = field(default_factory=dict)


@dataclass
class GroupConfig:
    batch_size: int | None = None
    lr: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None


@dataclass
class ScheduleConfig:
    kind: str = "poly"  # constant | step | poly | cosine
    power: float = 0.9
    milestones: list[float] = field(default_factory=list)  # fractions of the group's expected updates
    gamma: float = 0.1
    warmup: float = 0.0  # fraction of the group's expected updates
    warmup_factor: float = 0.1


@dataclass
class TrainConfig:
    steps: int = 2000  # samples drawn (batch_size each)
    batch_size: int = 1  # samples per step; asynchronous SGD streams single samples
    backward: str = "bounded"  # bounded | summed
    combine: str = "sum"  # sum | pcgrad (bounded only)
    weighting: str = "fixed"  # fixed (gamma_t) | uncertainty
    rule: str = "sgd"  # sgd | adamw
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    trunk_lr_mult: float = 1.0
    batch_sizes: dict[str, int] = field(default_factory=lambda: {"trunk": 30, "detection": 2, "default": 10})
    groups: dict[str, GroupConfig] = field(default_factory=dict)  # per-group overrides (trunk, task names)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    # auto | fp32 | bf16: bf16 autocasts the forward passes (losses stay fp32); auto = bf16 where the CPU runs it
    # natively (AMX-BF16, AVX512-BF16), fp32 elsewhere (ubernet.hardware). `bf16: true|false` is read as bf16|fp32.
    precision: str = "auto"
    channels_last: bool = False  # NHWC memory layout for the model (oneDNN's fast layout, in fp32 and bf16)
    eval_every: int = 0  # steps between evaluations (0 = only at the end)
    checkpoint_every: int = 500
    log_every: int = 10
    progress: bool = True
    prefetch: int = 0  # draws loaded ahead by a background process (0 = load in the training process)
    ema: float = 0.0  # decay of a moving average of the weights used for evaluation and prediction (0 = none)
    max_skipped_in_a_row: int = 100  # stop a diverged run: this many non-finite steps in a row (0 = never)
    allocator: str = "retain"  # retain (keep freed memory mapped: fewer page faults per step, glibc) | system


@dataclass
class EvalConfig:
    data: SourceConfig = field(default_factory=lambda: SourceConfig(name="eval", source="full", n=100, seed=10**6))
    max_images: int | None = None
    periodic_images: int = 20  # held-out images scored by the evaluations during training (curves); the final
    #                            evaluation always uses the whole held-out set
    workers: int = 0  # processes for the exact boundary matchers (0 = one per available core; 1 = serial)
    # multi-scale testing (ubernet.multiscale): dense outputs averaged over these input scales; [1.0] = one pass
    test_scales: list[float] = field(default_factory=lambda: [1.0])
    # flip testing: dense outputs also averaged over the left-right mirrored image (at every test scale)
    test_flip: bool = False


@dataclass
class Config:
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)  # task name -> options (num_classes: auto ...)
    data: list[SourceConfig] = field(default_factory=list)
    eval: EvalConfig = field(default_factory=EvalConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


_EXPONENT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check/convert ``value`` to the annotated type ``tp``; ConfigError naming ``key`` otherwise."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return from_dict(tp, value, key)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_convert(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, item = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {str(k): _convert(v, item, f"{key}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp in (int, float) and isinstance(value, str) and _EXPONENT.fullmatch(value.strip()):
        value = float(value)  # YAML 1.1 (PyYAML) reads 1e-3 as a string; YAML 1.2 and every user read a number
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if tp in (int, float, str, bool) and not (isinstance(value, tp) and not (tp is int and isinstance(value, bool))):
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    return value


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, refusing unknown keys (listing the valid ones)."""
    if cls is TrainConfig and "bf16" in data:
        data = _bf16_alias(data, prefix)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown key {where}{unknown[0]}; valid keys{' of ' + prefix if prefix else ''}: "
                          f"{', '.join(names)}")
    kwargs = {k: _convert(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in data.items()}
    return cls(**kwargs)


def _bf16_alias(data: dict[str, Any], prefix: str) -> dict[str, Any]:
    """``train.bf16: true|false`` of older configs and checkpoints, read as ``train.precision: bf16|fp32``."""
    key = f"{prefix}.bf16" if prefix else "bf16"
    data = dict(data)
    value = data.pop("bf16")
    if value is None:
        return data
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false (better: precision: auto | fp32 | bf16), got {value!r}")
    alias = "bf16" if value else "fp32"
    given = data.get("precision")
    if given is not None and given != alias:
        raise ConfigError(f"{key}: {value} contradicts {prefix + '.' if prefix else ''}precision: {given}; "
                          "keep only precision (auto | fp32 | bf16)")
    data["precision"] = alias
    return data


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain (YAML-able) dict of a config dataclass."""
    return dataclasses.asdict(cfg)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.steps=100"`` -> (["train", "steps"], 100); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.subkey=value")
    key, raw = text.split("=", 1)
    if not key:
        raise ConfigError(f"override {text!r} has an empty key")
    return key.split("."), yaml.safe_load(raw) if raw else None


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for p in path[:-1]:
            if isinstance(node, list):
                try:
                    node = node[int(p)]
                except (ValueError, IndexError) as e:
                    raise ConfigError(f"override {text!r}: {p!r} is not a valid index") from e
                continue
            node = node.setdefault(p, {})
            if not isinstance(node, (dict, list)):
                raise ConfigError(f"override {text!r}: {p!r} is not a mapping")
        if isinstance(node, list):
            node[int(path[-1])] = value
        else:
            node[path[-1]] = value
    return data


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Read a YAML config (or the defaults when ``path`` is None), apply overrides, validate."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML ({e})") from e
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: the top level must be a mapping")
    data = apply_overrides(data, overrides)
    cfg = from_dict(Config, data)
    validate(cfg)
    return cfg


def check_scales(scales: Sequence[float]) -> tuple[float, ...]:
    """Validated test scales of multi-scale testing (:mod:`ubernet.multiscale`): distinct, in [0.1, 4]."""
    out = tuple(float(s) for s in scales)
    if not out or any(not 0.1 <= s <= 4.0 for s in out) or len(set(out)) != len(out):
        raise ConfigError(f"test scales must be distinct numbers in [0.1, 4], got {list(scales)}")
    return out


def _choice(key: str, value: str, valid: Sequence[str]) -> None:
    if value not in valid:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(valid)}")


def validate(cfg: Config) -> None:
    """Value checks beyond types (the task/source cross-checks happen when the union is built)."""
    _choice("train.backward", cfg.train.backward, ("bounded", "summed"))
    _choice("train.combine", cfg.train.combine, ("sum", "pcgrad"))
    _choice("train.weighting", cfg.train.weighting, ("fixed", "uncertainty"))
    _choice("train.rule", cfg.train.rule, ("sgd", "adamw"))
    _choice("train.precision", cfg.train.precision, PRECISIONS)
    _choice("train.allocator", cfg.train.allocator, ("retain", "system"))
    _choice("train.schedule.kind", cfg.train.schedule.kind, ("constant", "step", "poly", "cosine"))
    _choice("model.tap_norm", cfg.model.tap_norm, ("bn", "none"))
    if cfg.train.steps < 1:
        raise ConfigError(f"train.steps must be >= 1, got {cfg.train.steps}")
    if cfg.train.batch_size < 1:
        raise ConfigError(f"train.batch_size must be >= 1, got {cfg.train.batch_size}")
    if cfg.train.prefetch < 0:
        raise ConfigError(f"train.prefetch must be >= 0 (0 = off), got {cfg.train.prefetch}")
    if cfg.train.max_skipped_in_a_row < 0:
        raise ConfigError(f"train.max_skipped_in_a_row must be >= 0 (0 = never stop), got "
                          f"{cfg.train.max_skipped_in_a_row}")
    if not 0.0 <= cfg.train.ema < 1.0:
        raise ConfigError(f"train.ema must be in [0, 1) (the average's per-step decay; 0 = off), got {cfg.train.ema}")
    if cfg.train.lr <= 0:
        raise ConfigError(f"train.lr must be > 0, got {cfg.train.lr}")
    if cfg.train.combine == "pcgrad" and cfg.train.backward != "bounded":
        raise ConfigError("train.combine=pcgrad needs train.backward=bounded (per-task gradients at the branch)")
    if not cfg.tasks:
        raise ConfigError("tasks: at least one task must be configured")
    from ubernet.data.transforms import Augment  # numpy + PIL only: cheap

    try:
        check_scales(cfg.eval.test_scales)
    except ConfigError as e:
        raise ConfigError(f"eval.test_scales: {e}") from None
    if cfg.eval.workers < 0:
        raise ConfigError(f"eval.workers must be >= 0 (0 = one process per core, 1 = serial), got {cfg.eval.workers}")
    if cfg.eval.data.augment:
        raise ConfigError("eval.data.augment: augmentation applies to training sources (data[*]) only")
    for i, s in enumerate(cfg.data):
        Augment.from_config(s.augment, f"data[{i}].augment")
        if s.kind == "synth" and len(s.size) != 2:
            raise ConfigError(f"data[{i}].size must be [H, W], got {s.size}")
        if s.kind != "synth" and not s.root:
            raise ConfigError(f"data[{i}] ({s.kind}) needs a root folder")
