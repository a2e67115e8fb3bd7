"""Config loading: validation errors name the key and list the valid values; overrides; union checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from ubernet.config import Config, from_dict, load_config, to_dict
from ubernet.data.sample import Sample
from ubernet.data.union import UnionEntry, validate_union
from ubernet.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "src" / "ubernet" / "configs"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("name", ["synthetic.yaml", "paper-vgg16.yaml"])
def test_shipped_configs_load(name: str) -> None:
    cfg = load_config(CONFIGS / name)
    assert len(cfg.tasks) == 7


def test_unknown_key_is_named_with_valid_keys(tmp_path: Path) -> None:
    p = write(tmp_path, "tasks: {saliency: {}}\ntrain: {stpes: 3}\n")
    with pytest.raises(ConfigError, match=r"train\.stpes.*steps"):
        load_config(p)


def test_wrong_type_names_key(tmp_path: Path) -> None:
    p = write(tmp_path, "tasks: {saliency: {}}\ntrain: {lr: fast}\n")
    with pytest.raises(ConfigError, match=r"train\.lr: expected float"):
        load_config(p)


def test_bad_choice_lists_valid_values(tmp_path: Path) -> None:
    p = write(tmp_path, "tasks: {saliency: {}}\ntrain: {backward: lazy}\n")
    with pytest.raises(ConfigError, match="bounded, summed"):
        load_config(p)


def test_overrides_apply_and_are_validated() -> None:
    cfg = load_config(CONFIGS / "synthetic.yaml", ["train.steps=7", "model.scales=[1.0]", "data.0.weight=3"])
    assert cfg.train.steps == 7 and cfg.model.scales == [1.0] and cfg.data[0].weight == 3.0
    with pytest.raises(ConfigError, match="train.steps must be >= 1"):
        load_config(CONFIGS / "synthetic.yaml", ["train.steps=0"])
    with pytest.raises(ConfigError, match="key.subkey=value"):
        load_config(CONFIGS / "synthetic.yaml", ["train.steps"])
    with pytest.raises(ConfigError, match="eval.workers must be >= 0"):
        load_config(CONFIGS / "synthetic.yaml", ["eval.workers=-1"])
    assert load_config(CONFIGS / "synthetic.yaml", ["eval.test_scales=[0.5,1,2]"]).eval.test_scales == [0.5, 1, 2]
    with pytest.raises(ConfigError, match=r"eval\.test_scales: test scales must be distinct"):
        load_config(CONFIGS / "synthetic.yaml", ["eval.test_scales=[1,1]"])


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "a: [1, 2\n"))


def _ds() -> list[Sample]:
    return [Sample(image=np.zeros((4, 4, 3), np.uint8))]


def test_union_errors_list_what_is_valid() -> None:
    known = ["boundaries", "saliency", "semseg"]
    with pytest.raises(ConfigError, match=r"no source .* labels task\(s\) \['semseg'\]"):
        validate_union([UnionEntry("a", _ds(), ("saliency",))], ["saliency", "semseg"], known)
    with pytest.raises(ConfigError, match="unknown task.*known tasks: boundaries, saliency, semseg"):
        validate_union([UnionEntry("a", _ds(), ("salincy",))], ["saliency"], known)
    with pytest.raises(ConfigError, match="weight must be a finite number"):
        validate_union([UnionEntry("a", _ds(), ("saliency",), float("nan"))], ["saliency"], known)
    with pytest.raises(ConfigError, match="sum to 0"):
        validate_union([UnionEntry("a", _ds(), ("saliency",), 0.0)], [], known)
    # a task only labelled by a zero-weight source is never seen
    with pytest.raises(ConfigError, match="semseg"):
        validate_union([UnionEntry("a", _ds(), ("saliency",), 1.0), UnionEntry("b", _ds(), ("semseg",), 0.0)],
                       ["saliency", "semseg"], known)


def test_precision_defaults_to_auto_in_every_shipped_config_but_mobilenets() -> None:
    # MobileNetV2's depthwise convolutions gain nothing from bf16, so its config asks for fp32 on every CPU
    for path in sorted(CONFIGS.glob("*.yaml")):
        want = "fp32" if "mobilenet" in path.name else "auto"
        assert load_config(path).train.precision == want, path.name


@pytest.mark.parametrize(("old", "precision"), [(True, "bf16"), (False, "fp32")])
def test_train_bf16_is_read_as_precision(tmp_path: Path, old: bool, precision: str) -> None:
    # configs and checkpoints written before train.precision existed
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"tasks": {"boundaries": {}}, "train": {"bf16": old}}))
    cfg = load_config(p)
    assert cfg.train.precision == precision
    assert "bf16" not in to_dict(cfg)["train"]
    assert from_dict(Config, {"tasks": {"boundaries": {}}, "train": {"bf16": old}}).train.precision == precision
    assert load_config(p, [f"train.precision={precision}"]).train.precision == precision


def test_train_bf16_contradicting_precision_or_not_a_bool_is_named(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"tasks": {"boundaries": {}}, "train": {"bf16": True, "precision": "fp32"}}))
    with pytest.raises(ConfigError, match=r"train\.bf16: True contradicts train\.precision: fp32"):
        load_config(p)
    with pytest.raises(ConfigError, match=r"train\.bf16: expected true or false"):
        load_config(p, ["train.bf16=maybe", "train.precision=auto"])
    with pytest.raises(ConfigError, match=r"train\.precision: 'fp16' is not one of auto, fp32, bf16"):
        load_config(p, ["train.bf16=null", "train.precision=fp16"])


def test_numbers_with_an_exponent_and_no_dot_are_numbers(tmp_path: Path) -> None:
    # YAML 1.1 (PyYAML) reads 1e-3 as a string; the config reads it as the number everyone means
    p = write(tmp_path, "tasks: {boundaries: {}}\ntrain: {lr: 1e-3, steps: 2E3}\n")
    cfg = load_config(p, ["train.weight_decay=5e-4"])
    assert cfg.train.lr == 0.001 and cfg.train.steps == 2000 and cfg.train.weight_decay == 0.0005
    with pytest.raises(ConfigError, match="expected int"):
        load_config(p, ["train.steps=2.5e0"])
    with pytest.raises(ConfigError, match="expected float"):
        load_config(p, ["train.lr=1e-3x"])


def test_overrides_may_follow_options_on_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ubernet.cli import train
    from ubernet.cli.main import main

    seen = {}
    monkeypatch.setattr(train, "run", lambda args: seen.update(overrides=args.overrides, out=args.out) or 0)
    assert main(["train", "--config", "c.yaml", "train.lr=1e-3", "--out", "o", "train.steps=5"]) == 0
    assert seen == {"overrides": ["train.lr=1e-3", "train.steps=5"], "out": "o"}
    with pytest.raises(SystemExit):  # anything else unrecognised is still argparse's error
        main(["train", "--config", "c.yaml", "--out", "o", "--bogus"])
