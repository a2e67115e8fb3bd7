"""What this process runs on, and the numeric precision chosen for it.

CPUs differ in what bf16 costs them. With AMX-BF16 (Intel Sapphire Rapids and later) or AVX512-BF16 (Intel Cooper
Lake, AMD Zen 4 and later) oneDNN runs bf16 convolutions and matrix products natively, faster than fp32. On an
AVX2-only CPU (most laptops, many cloud VMs) bf16 is emulated through fp32 and several times *slower* than fp32, and
oneDNN's fused bf16 kernels refuse to run at all. So the precision is a property of the machine, not of a recipe:
``precision: auto`` takes bf16 exactly where it is native and fp32 elsewhere.

The capability is read from the CPU's flags (``/proc/cpuinfo``) and then capped by the two variables that limit
what the libraries use, so that an AMX machine can stand in for an AVX2-only one:

* ``ONEDNN_MAX_CPU_ISA`` (oneDNN's kernels: ``AVX2``, ``AVX512_CORE``, ``AVX512_CORE_BF16``, ...);
* ``ATEN_CPU_CAPABILITY`` (PyTorch's own vectorised kernels: ``default``, ``avx2``, ``avx512``).

Classes, weakest first: ``SSE`` < ``AVX2`` < ``AVX-512`` < ``AVX512-BF16`` < ``AMX``.
"""

from __future__ import annotations

import functools
import os
import platform
import sys
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ubernet.errors import ConfigError

if TYPE_CHECKING:  # torch is imported where it is used: the command line's parser must not load it
    import torch

CLASSES = ("SSE", "AVX2", "AVX-512", "AVX512-BF16", "AMX")
NATIVE_BF16 = ("AVX512-BF16", "AMX")
PRECISIONS = ("auto", "fp32", "bf16")

# oneDNN's ISA names (both spellings of its releases) -> the class they allow at most
_ONEDNN_ISA = {
    "SSE41": "SSE", "AVX": "SSE", "AVX2": "AVX2", "AVX2_VNNI": "AVX2", "AVX2_VNNI_2": "AVX2",
    "AVX512_CORE": "AVX-512", "AVX512_CORE_VNNI": "AVX-512",
    "AVX512_CORE_BF16": "AVX512-BF16", "AVX512_CORE_FP16": "AVX512-BF16", "AVX10_1_512": "AVX512-BF16",
    "AVX512_CORE_AMX": "AMX", "AVX512_CORE_AMX_FP16": "AMX", "AVX10_1_512_AMX": "AMX",
    "AVX10_1_512_AMX_FP16": "AMX", "AVX10_2_512": "AVX512-BF16", "AVX10_2_512_AMX_2": "AMX",
}
# ATen's capability names (as torch.backends.cpu.get_cpu_capability() reports them) -> the class they allow
_ATEN = {"DEFAULT": "SSE", "AVX2": "AVX2"}


@dataclass(frozen=True)
class CpuInfo:
    """The CPU as the libraries will use it.

    Attributes:
        model: the model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere).
        arch: ``platform.machine()`` (``x86_64``, ``aarch64``, ...).
        hardware: the class the CPU's flags give (one of :data:`CLASSES`; ``""`` off x86).
        capability: the class in force after the limits (what decides precision and fast paths).
        limits: the variables that lowered ``hardware`` to ``capability``, as ``NAME=value``.
        threads: torch's intra-op threads.
        isa: ATen's own capability word (``AVX512``, ``AVX2``, ``DEFAULT``, ...).
    """

    model: str
    arch: str
    hardware: str
    capability: str
    limits: tuple[str, ...] = ()
    threads: int = 1
    isa: str = ""

    @property
    def bf16_native(self) -> bool:
        """bf16 convolutions and matrix products run on the CPU's own bf16 units (AMX or AVX512-BF16) and the
        installed PyTorch's oneDNN can use them."""
        return self.capability in NATIVE_BF16 and _mkldnn_bf16_supported()

    def describe(self) -> str:
        """``AMD EPYC 9B45 (AVX512-BF16), 2 threads``, with the limits when the class was lowered."""
        cap = self.capability or self.isa or self.arch
        if self.limits:
            cap += f"; {self.hardware} limited by {', '.join(self.limits)}"
        return f"{self.model} ({cap}), {self.threads} thread{'s' if self.threads != 1 else ''}"

    def record(self) -> dict[str, Any]:
        return {"model": self.model, "arch": self.arch, "hardware": self.hardware, "capability": self.capability,
                "limits": list(self.limits), "threads": self.threads, "aten_capability": self.isa}


def _rank(cls: str) -> int:
    return CLASSES.index(cls)


@functools.cache
def _cpuinfo() -> tuple[str, frozenset[str]]:
    """(model name, flags) of the first processor in ``/proc/cpuinfo``; ('', {}) where there is none."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return "", frozenset()
    model, flags = "", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = frozenset(value.split())
        if model and flags:
            break
    return model, flags


def class_from_flags(flags: frozenset[str] | set[str]) -> str:
    """The x86 class a set of ``/proc/cpuinfo`` flags allows (bf16 only with AVX-512's bw/vl/dq, which oneDNN's
    bf16 kernels also need)."""
    avx512 = {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags
    if avx512 and "amx_bf16" in flags and "amx_tile" in flags:
        return "AMX"
    if avx512 and "avx512_bf16" in flags:
        return "AVX512-BF16"
    if avx512:
        return "AVX-512"
    if {"avx2", "fma"} <= flags:
        return "AVX2"
    return "SSE"


def apply_limits(hardware: str, env: dict[str, str], aten: str) -> tuple[str, tuple[str, ...]]:
    """``hardware`` capped by ``ONEDNN_MAX_CPU_ISA`` (from ``env``) and ATen's capability ``aten``; returns the
    class in force and the limits that lowered it."""
    cap, limits = hardware, []
    isa = env.get("ONEDNN_MAX_CPU_ISA", env.get("DNNL_MAX_CPU_ISA", "")).strip().upper()
    if isa in _ONEDNN_ISA and _rank(_ONEDNN_ISA[isa]) < _rank(cap):
        cap = _ONEDNN_ISA[isa]
        limits.append(f"ONEDNN_MAX_CPU_ISA={isa}")
    aten_cap = _ATEN.get(aten.upper())
    if aten_cap is not None and _rank(aten_cap) < _rank(cap):
        cap = aten_cap
        limits.append(f"ATEN_CPU_CAPABILITY={aten.lower()}")
    return cap, tuple(limits)


def cpu_info() -> CpuInfo:
    """This machine's :class:`CpuInfo` (the environment's limits read now: tests may change them)."""
    model, flags = _cpuinfo()
    arch = platform.machine() or "unknown"
    model = model or platform.processor() or arch
    import torch

    try:
        isa = str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        isa = ""
    if arch.lower() in ("x86_64", "amd64", "i686", "i386") and flags:
        hardware = class_from_flags(flags)
        capability, limits = apply_limits(hardware, dict(os.environ), isa)
    else:  # not x86, or no flags to read: nothing here is known to run bf16 natively through oneDNN
        hardware = capability = ""
        limits = ()
    return CpuInfo(model=model, arch=arch, hardware=hardware, capability=capability, limits=limits,
                   threads=torch.get_num_threads(), isa=isa)


def _mkldnn_bf16_supported() -> bool:
    """PyTorch's own check that its oneDNN bf16 kernels can run on this CPU (they raise otherwise)."""
    import torch

    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def fused_lowp_ok(dtype: torch.dtype, info: CpuInfo | None = None) -> bool:
    """oneDNN's fused low-precision kernels (``torch.ops.mkldnn._convolution_pointwise``) may run on ``dtype``
    operands: only where that dtype is native (elsewhere they raise — "bf16 path needs the cpu support ..." — or,
    where the class is only limited by the variables above, run emulated)."""
    import torch

    info = info or cpu_info()
    if dtype == torch.bfloat16:
        return info.bf16_native
    if dtype == torch.float16:
        try:
            fp16 = bool(torch.ops.mkldnn._is_mkldnn_fp16_supported())
        except (AttributeError, RuntimeError):
            fp16 = False
        return fp16 and info.capability in NATIVE_BF16
    return False


@dataclass(frozen=True)
class Precision:
    """The precision a command runs its network in.

    Attributes:
        name: ``fp32`` or ``bf16`` (bf16 = forward passes under ``torch.autocast``; losses stay fp32).
        requested: what the config or ``--precision`` asked for (``auto``, ``fp32``, ``bf16``).
        reason: why ``name`` was chosen, in words.
        device: ``cpu`` (the device type autocast is opened for).
    """

    name: str
    requested: str
    reason: str
    device: str = "cpu"
    cpu: CpuInfo | None = field(default=None, compare=False)

    @property
    def bf16(self) -> bool:
        return self.name == "bf16"

    @property
    def dtype(self) -> torch.dtype:
        import torch

        return torch.bfloat16 if self.bf16 else torch.float32

    def autocast(self) -> AbstractContextManager[Any]:
        """The block forward passes run in: bf16 autocast, or nothing for fp32."""
        import torch

        return torch.autocast(self.device, dtype=torch.bfloat16) if self.bf16 else nullcontext()

    def line(self) -> str:
        """One line for the start of a command: what it runs on and in which precision, and why."""
        where = self.cpu.describe() if self.cpu is not None else self.device
        return f"on {where}; precision {self.name} ({self.reason})"

    def record(self) -> dict[str, Any]:
        """The same facts for metrics.json and the bench JSONs."""
        import torch

        out: dict[str, Any] = {"precision": self.name, "requested": self.requested, "reason": self.reason,
                               "device": self.device, "torch": torch.__version__}
        if self.cpu is not None:
            out["cpu"] = self.cpu.record()
        return out


def resolve_precision(requested: str | None = "auto", *, info: CpuInfo | None = None) -> Precision:
    """``auto``, ``fp32`` or ``bf16`` -> the :class:`Precision` to run in on this machine's CPU.

    ``auto`` is bf16 where it is native (:attr:`CpuInfo.bf16_native`) and fp32 elsewhere. An explicit ``bf16``
    is honoured everywhere (results are the same kind; on a CPU without native bf16 it is emulated, several times
    slower than fp32, and the reason says so)."""
    req = "auto" if requested is None else str(requested).lower()
    if req not in PRECISIONS:
        raise ConfigError(f"precision: {requested!r} is not one of {', '.join(PRECISIONS)}")
    info = info or cpu_info()
    cap = info.capability or info.isa or info.arch
    if req == "fp32":
        return Precision("fp32", req, "asked for", cpu=info)
    if req == "bf16":
        why = "asked for" if info.bf16_native else f"asked for; emulated on {cap}, slower than fp32 here"
        return Precision("bf16", req, why, cpu=info)
    if info.bf16_native:
        return Precision("bf16", req, f"auto: native bf16 on {cap}", cpu=info)
    return Precision("fp32", req, f"auto: no native bf16 on {cap}, which needs AMX-BF16 or AVX512-BF16", cpu=info)


def announce(command: str, precision: Precision) -> None:
    """Print ``ubernet COMMAND: on CPU (capability), N threads; precision P (why)`` to stderr, once per run (only
    rank 0 under ``torchrun``)."""
    if os.environ.get("RANK", "0") == "0":
        print(f"ubernet {command}: {precision.line()}", file=sys.stderr, flush=True)
