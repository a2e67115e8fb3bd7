"""MATLAB ``.mat`` files: loading with clear errors and navigating structs and cells robustly.

``scipy.io.loadmat`` represents a MATLAB struct either as a numpy structured array (``struct_as_record=True``,
the default, usually wrapped in 1×1 object arrays) or as ``mat_struct`` objects (``struct_as_record=False``),
and a cell array as an object array. The helpers here accept all of these (and plain dicts, which is what a
test fixture written by ``savemat`` looks like before saving), so readers do not depend on one layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ubernet.errors import DataError

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def is_hdf5_mat(path: str | Path) -> bool:
    """True for a MATLAB v7.3 file (an HDF5 container with a 512-byte MATLAB header)."""
    try:
        with open(path, "rb") as f:
            head = f.read(520)
    except OSError:
        return False
    return head[512:520] == _HDF5_MAGIC or head[:8] == _HDF5_MAGIC


def load_mat(path: str | Path, keys: Sequence[str] | None = None) -> dict[str, Any]:
    """``scipy.io.loadmat`` (default layout) with a DataError naming the file for every failure.

    Args:
        path: the ``.mat`` file (v4–v7.2; v7.3 HDF5 files need :func:`ubernet.io.matfile.open_hdf5_mat`).
        keys: variables that must be present.
    """
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: .mat file not found")
    if is_hdf5_mat(path):
        raise DataError(f"{path}: MATLAB v7.3 (HDF5) file; this reader expects a v7 .mat")
    try:
        data = scipy.io.loadmat(str(path), variable_names=list(keys) if keys else None)
    except Exception as e:  # scipy raises ValueError, TypeError, OSError, MatReadError... on corrupt files
        raise DataError(f"{path}: unreadable .mat file ({type(e).__name__}: {e})") from None
    for k in keys or ():
        if k not in data:
            try:  # only the requested variables were loaded: list what the file holds
                found = ", ".join(sorted(name for name, _, _ in scipy.io.whosmat(str(path)))) or "none"
            except Exception:
                found = "unknown"
            raise DataError(f"{path}: no variable {k!r} in the .mat file (found: {found})")
    return data


def open_hdf5_mat(path: str | Path) -> Any:
    """Open a MATLAB v7.3 file with h5py (optional dependency); DataError when h5py is missing."""
    try:
        import h5py
    except ImportError:
        raise DataError(
            f"{path}: MATLAB v7.3 (HDF5) file; install h5py (pip install 'ubernet[h5]') to read it"
        ) from None
    try:
        return h5py.File(str(path), "r")
    except OSError as e:
        raise DataError(f"{path}: unreadable HDF5 .mat file ({e})") from None


def unwrap(x: Any) -> Any:
    """Strip the 1×1 (or 0-d) object-array wrappers scipy puts around struct fields and cell entries."""
    while isinstance(x, np.ndarray) and x.dtype == object and x.size == 1:
        x = x.reshape(-1)[0]
    return x


def _is_struct(x: Any) -> bool:
    return (
        (isinstance(x, (np.ndarray, np.void)) and x.dtype.names is not None)
        or hasattr(x, "_fieldnames")
        or isinstance(x, dict)
    )


def field_names(s: Any) -> tuple[str, ...]:
    """Field names of a struct in any of the supported layouts (empty for non-structs)."""
    s = unwrap(s)
    if isinstance(s, dict):
        return tuple(s)
    if hasattr(s, "_fieldnames"):
        return tuple(s._fieldnames)
    if isinstance(s, (np.ndarray, np.void)) and s.dtype.names is not None:
        return tuple(s.dtype.names)
    return ()


def get_field(s: Any, name: str, where: str | Path = "") -> Any:
    """Field ``name`` of a single struct (any layout), unwrapped; DataError naming ``where`` if it is missing."""
    s = unwrap(s)
    if isinstance(s, np.ndarray) and s.dtype.names is not None:
        if s.size != 1:
            raise DataError(f"{where}: expected one struct, found a struct array of {s.size}")
        s = s.reshape(-1)[0]
    names = field_names(s)
    if name not in names:
        raise DataError(f"{where}: struct has no field {name!r} (fields: {', '.join(names) or 'none'})")
    if isinstance(s, dict):
        v = s[name]
    elif hasattr(s, "_fieldnames"):
        v = getattr(s, name)
    else:
        v = s[name]
    return unwrap(v)


def items(x: Any) -> list[Any]:
    """Entries of a cell array or struct array (any layout, any 1×K / K×1 / K shape), each unwrapped.

    A single struct (not an array) gives a one-element list; an empty array gives ``[]``.
    """
    x = unwrap(x)
    if isinstance(x, np.ndarray) and (x.dtype == object or x.dtype.names is not None):
        # MATLAB stores column-major; for the vectors used by datasets (1×K or K×1) the order is the same
        return [unwrap(e) for e in x.reshape(-1, order="F")]
    if isinstance(x, (list, tuple)):
        return [unwrap(e) for e in x]
    if _is_struct(x):
        return [x]
    if isinstance(x, np.ndarray) and x.size == 0:
        return []
    return [x]


def as_str(x: Any) -> str:
    """A MATLAB char array (loaded as ``array(['name'])`` or similar) as a Python str."""
    x = unwrap(x)
    if isinstance(x, np.ndarray):
        if x.size == 0:
            return ""
        if x.dtype.kind in "US":
            return "".join(str(e) for e in x.reshape(-1))
        x = x.reshape(-1)[0]
    if isinstance(x, bytes):
        return x.decode()
    return str(x)


def as_int(x: Any, where: str | Path = "") -> int:
    """A MATLAB scalar (loaded as a 1×1 array) as int."""
    a = np.asarray(unwrap(x))
    if a.size != 1:
        raise DataError(f"{where}: expected a scalar, found shape {a.shape}")
    return int(a.reshape(-1)[0])


def as_dense(x: Any) -> np.ndarray:
    """A dense numpy array from a dense or scipy-sparse MATLAB matrix."""
    x = unwrap(x)
    if hasattr(x, "toarray"):
        return np.asarray(x.toarray())
    return np.asarray(x)
