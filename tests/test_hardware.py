"""CPU capability detection, the precision ``auto`` picks, and the fallbacks of the CPU-feature fast paths.

Every test here passes on any CPU: the classes are derived from hand-written flag sets, the machine-dependent
checks compare against what this machine's own detection says, and the AVX2 class is emulated in a subprocess
(``ONEDNN_MAX_CPU_ISA=AVX2``, ``ATEN_CPU_CAPABILITY=avx2``), where oneDNN itself is limited as on an AVX2-only CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ubernet import hardware
from ubernet.errors import ConfigError
from ubernet.hardware import CpuInfo, apply_limits, class_from_flags, resolve_precision

AVX2 = {"sse4_2", "avx", "avx2", "fma", "f16c"}
AVX512 = AVX2 | {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"}


@pytest.mark.parametrize(("flags", "expected"), [
    (set(), "SSE"),
    ({"sse4_2", "avx"}, "SSE"),
    (AVX2, "AVX2"),
    (AVX2 | {"avx512f"}, "AVX2"),  # AVX-512 foundation alone: oneDNN's avx512_core needs bw/vl/dq too
    (AVX512, "AVX-512"),
    (AVX512 | {"avx512_bf16"}, "AVX512-BF16"),  # Cooper Lake, AMD Zen 4 / Zen 5
    (AVX2 | {"avx512_bf16"}, "AVX2"),
    (AVX512 | {"avx512_bf16", "amx_bf16", "amx_tile", "amx_int8"}, "AMX"),  # Sapphire Rapids
    (AVX512 | {"amx_tile"}, "AVX-512"),  # tiles without bf16 arithmetic
])
def test_class_from_flags(flags: set[str], expected: str) -> None:
    assert class_from_flags(frozenset(flags)) == expected


@pytest.mark.parametrize(("hw", "env", "aten", "expected", "limits"), [
    ("AMX", {}, "AVX512", "AMX", ()),
    ("AMX", {"ONEDNN_MAX_CPU_ISA": "AVX2"}, "AVX512", "AVX2", ("ONEDNN_MAX_CPU_ISA=AVX2",)),
    ("AMX", {"ONEDNN_MAX_CPU_ISA": "avx512_core_bf16"}, "AVX512", "AVX512-BF16",
     ("ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16",)),
    ("AMX", {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, "AVX512", "AVX-512", ("ONEDNN_MAX_CPU_ISA=AVX512_CORE",)),
    ("AMX", {"DNNL_MAX_CPU_ISA": "AVX2"}, "AVX512", "AVX2", ("ONEDNN_MAX_CPU_ISA=AVX2",)),  # oneDNN's old name
    ("AMX", {}, "AVX2", "AVX2", ("ATEN_CPU_CAPABILITY=avx2",)),
    ("AVX512-BF16", {}, "DEFAULT", "SSE", ("ATEN_CPU_CAPABILITY=default",)),
    ("AVX2", {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}, "AVX2", "AVX2", ()),  # a limit never raises the class
    ("AMX", {"ONEDNN_MAX_CPU_ISA": "DEFAULT"}, "AVX512", "AMX", ()),
    ("AMX", {"ONEDNN_MAX_CPU_ISA": "AVX2"}, "AVX2", "AVX2", ("ONEDNN_MAX_CPU_ISA=AVX2",)),  # counted once
])
def test_limits_cap_the_class(hw: str, env: dict[str, str], aten: str, expected: str,
                              limits: tuple[str, ...]) -> None:
    assert apply_limits(hw, env, aten) == (expected, limits)


def _info(capability: str) -> CpuInfo:
    return CpuInfo(model="Test CPU", arch="x86_64", hardware=capability, capability=capability, threads=2)


@pytest.mark.parametrize(("capability", "expected"), [
    ("AVX2", "fp32"), ("AVX-512", "fp32"), ("SSE", "fp32"), ("AVX512-BF16", "bf16"), ("AMX", "bf16"), ("", "fp32")])
def test_auto_is_bf16_only_where_native(monkeypatch: pytest.MonkeyPatch, capability: str, expected: str) -> None:
    monkeypatch.setattr(hardware, "_mkldnn_bf16_supported", lambda: True)
    p = resolve_precision("auto", info=_info(capability))
    assert p.name == expected and p.requested == "auto"
    assert (p.dtype == torch.bfloat16) == (expected == "bf16")
    assert p.reason.startswith("auto: ") and (capability in p.reason)
    # explicit choices are honoured on every class; emulated bf16 says so
    assert resolve_precision("fp32", info=_info(capability)).name == "fp32"
    forced = resolve_precision("bf16", info=_info(capability))
    assert forced.name == "bf16" and (("emulated" in forced.reason) == (expected == "fp32"))


def test_auto_needs_torchs_own_bf16_support(monkeypatch: pytest.MonkeyPatch) -> None:
    # the flags say AMX but this PyTorch build's oneDNN cannot use it (e.g. built without oneDNN): fp32
    monkeypatch.setattr(hardware, "_mkldnn_bf16_supported", lambda: False)
    assert resolve_precision("auto", info=_info("AMX")).name == "fp32"


def test_unknown_precision_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="fp16.*auto, fp32, bf16"):
        resolve_precision("fp16")


def test_line_and_record_name_the_cpu_the_limits_and_the_reason() -> None:
    info = CpuInfo(model="Intel Xeon Platinum 8480+", arch="x86_64", hardware="AMX", capability="AVX2",
                   limits=("ONEDNN_MAX_CPU_ISA=AVX2",), threads=2, isa="AVX2")
    p = resolve_precision("auto", info=info)
    assert p.line() == ("on Intel Xeon Platinum 8480+ (AVX2; AMX limited by ONEDNN_MAX_CPU_ISA=AVX2), 2 threads; "
                        "precision fp32 (auto: no native bf16 on AVX2, which needs AMX-BF16 or AVX512-BF16)")
    rec = json.loads(json.dumps(p.record()))
    assert rec["precision"] == "fp32" and rec["requested"] == "auto"
    assert rec["cpu"] == {"model": "Intel Xeon Platinum 8480+", "arch": "x86_64", "hardware": "AMX",
                          "capability": "AVX2", "limits": ["ONEDNN_MAX_CPU_ISA=AVX2"], "threads": 2,
                          "aten_capability": "AVX2"}


def test_this_machines_detection_honours_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    here = hardware.cpu_info()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    limited = hardware.cpu_info()
    assert limited.hardware == here.hardware
    if here.hardware:  # x86 with readable flags
        assert limited.capability in ("SSE", "AVX2")
    assert not limited.bf16_native
    assert resolve_precision("auto", info=limited).name == "fp32"


_EMULATED = r"""
import json, torch
from ubernet import hardware
from ubernet.models.trunks import base, build_trunk
calls = []
fused = base._conv_relu_lowp
base._conv_relu_lowp = lambda *a: calls.append(1) or fused(*a)
torch.manual_seed(0)
trunk = build_trunk("vgg16", fc_channels=16).eval()
x = torch.randn(1, 3, 32, 32)
with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
    out = trunk(x)  # raised "bf16 path needs the cpu support ..." on AVX2-only CPUs before the fallback
    ref, y = [], x
    for layer, name in trunk.layers():
        y = layer(y)
        if name is not None:
            ref.append(y)
same = all(torch.equal(a, b) for a, b in zip(out, ref))
p = hardware.resolve_precision("auto")
print(json.dumps({"precision": p.name, "capability": p.cpu.capability, "fused_calls": len(calls),
                  "same": same, "mkldnn_bf16": hardware._mkldnn_bf16_supported()}))
"""


def test_emulated_avx2_takes_the_fallback_paths() -> None:
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    src = str(Path(hardware.__file__).parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [env.get("PYTHONPATH")])])
    out = subprocess.run([sys.executable, "-c", _EMULATED], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["precision"] == "fp32"
    assert got["capability"] in ("AVX2", "SSE", "")  # "" off x86, where auto is fp32 too
    assert got["fused_calls"] == 0 and got["same"]
