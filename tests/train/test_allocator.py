"""``train.allocator``: glibc's thresholds are set once, never over the user's own malloc settings."""

from __future__ import annotations

import pytest

from ubernet.config import ConfigError, load_config
from ubernet.train import allocator


class _FakeLibc:
    def __init__(self, result: int = 1) -> None:
        self.calls: list[tuple[int, int]] = []
        self.result = result

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return self.result


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(allocator, "_state", None)
    for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"):
        monkeypatch.delenv(k, raising=False)
    libc = _FakeLibc()
    monkeypatch.setattr(allocator, "_libc", lambda: libc)
    return libc


def test_sets_both_thresholds_once(fresh) -> None:
    assert allocator.retain_freed_memory() == "retained"
    # M_MMAP_THRESHOLD = -3 at glibc's 64-bit maximum (32 MiB), M_TRIM_THRESHOLD = -1 at 1 GiB
    assert fresh.calls == [(-3, 32 * 1024 * 1024), (-1, 1024**3)]
    assert allocator.retain_freed_memory() == "retained"
    assert len(fresh.calls) == 2  # process-wide and idempotent


@pytest.mark.parametrize("var", ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"])
def test_user_settings_win(fresh, monkeypatch, var) -> None:
    monkeypatch.setenv(var, "131072")
    state = allocator.retain_freed_memory()
    assert state.startswith("unchanged") and var in state
    assert fresh.calls == []


def test_not_glibc_or_refused(fresh, monkeypatch) -> None:
    monkeypatch.setattr(allocator, "_libc", lambda: None)
    assert "not glibc" in allocator.retain_freed_memory()
    monkeypatch.setattr(allocator, "_state", None)
    refusing = _FakeLibc(result=0)
    monkeypatch.setattr(allocator, "_libc", lambda: refusing)
    assert "refused" in allocator.retain_freed_memory()


def test_config_names_the_valid_values(tmp_path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("train: {allocator: jemalloc}\n")
    with pytest.raises(ConfigError, match="train.allocator.*retain.*system"):
        load_config(p)


def test_finds_the_real_glibc() -> None:
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("not a glibc system")
    assert hasattr(allocator._libc(), "mallopt")
