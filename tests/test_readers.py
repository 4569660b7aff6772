"""Every input format, broken files, and the same lattice in another orientation."""

import json
import zipfile

import numpy as np
import pytest

from dismai import StructureError, StructureSet
from dismai.errors import InputError
from dismai.readers import FORMATS, detect_format, read_structures


def make_set(m=3, seed=0):
    rng = np.random.default_rng(seed)
    lattice = np.array([[5.0, 0, 0], [1.0, 6.0, 0], [0.5, 0.3, 7.0]])
    return StructureSet(lattice, ["Cr", "Cr", "Fe", "Ni", "Ni"], rng.random((m, 5, 3)))


def same_structures(a: StructureSet, b: StructureSet, atol=1e-6) -> bool:
    d = a.frac - b.frac
    return a.species == b.species and np.allclose(d - np.round(d), 0, atol=atol)


def write_format(s: StructureSet, fmt: str, path):
    """Write `s` in `fmt` at `path` (a file or a folder, as the format wants)."""
    from ase.io import write

    frames = s.to_atoms()
    if fmt == "extxyz":
        write(path, frames, format="extxyz")
    elif fmt in ("cif-folder", "poscar-folder"):
        path.mkdir()
        for i, at in enumerate(frames):
            if fmt == "cif-folder":
                write(path / f"s{i:03d}.cif", at, format="cif")
            else:
                write(path / f"POSCAR_{i:03d}", at, format="vasp", direct=True)
    elif fmt == "cif-zip":
        with zipfile.ZipFile(path, "w") as zf:
            for i, at in enumerate(frames):
                tmp = path.parent / f"z{i}.cif"
                write(tmp, at, format="cif")
                zf.write(tmp, f"inner/s{i:03d}.cif")
    elif fmt == "ase-db":
        import ase.db

        db = ase.db.connect(str(path))
        for at in frames:
            db.write(at)
    elif fmt == "pymatgen-json":
        from pymatgen.io.ase import AseAtomsAdaptor

        path.write_text(json.dumps([AseAtomsAdaptor.get_structure(at).as_dict()
                                    for at in frames]))


CASES = [("extxyz", "a.extxyz", "extxyz"), ("cif-folder", "cifs", "cif"),
         ("cif-zip", "cifs.zip", "cif"), ("poscar-folder", "vasp", "poscar"),
         ("ase-db", "a.db", "ase-db"), ("pymatgen-json", "a.json", "pymatgen-json")]


@pytest.mark.parametrize("kind, name, fmt", CASES)
def test_every_format_reads_back_the_same_structures(tmp_path, kind, name, fmt):
    s = make_set(3)
    path = tmp_path / name
    write_format(s, kind, path)
    assert detect_format(path) == fmt
    back = read_structures(path, template=s)
    assert len(back) == 3 and same_structures(back, s, atol=1e-5)
    assert same_structures(read_structures(path, format=fmt), s, atol=1e-5)


def test_single_cif_and_poscar_files(tmp_path):
    from ase.io import write

    s = make_set(1)
    write(tmp_path / "one.cif", s.to_atoms()[0], format="cif")
    write(tmp_path / "CONTCAR", s.to_atoms()[0], format="vasp")
    for p in (tmp_path / "one.cif", tmp_path / "CONTCAR"):
        assert same_structures(read_structures(p, template=s), s, atol=1e-5)


@pytest.mark.parametrize("name, content, message", [
    ("bad.cif", "data_x\n_cell_length_a 5\nnot a cif\n", "bad.cif: not a readable CIF"),
    ("POSCAR", "just one line\n", "POSCAR: not a readable POSCAR"),
    ("bad.json", "{not json", "bad.json: not valid JSON"),
    ("bad.json", '[{"lattice": 1}]', "bad.json: structure 0: not a pymatgen Structure"),
    ("bad.json", "3", "expected a pymatgen Structure dict"),
    ("bad.db", "this is no sqlite file", "bad.db: not a readable ASE database"),
    ("empty.cif", "", "empty.cif: file is empty"),
])
def test_broken_files_are_one_line_errors(tmp_path, name, content, message):
    p = tmp_path / name
    p.write_text(content)
    with pytest.raises(StructureError) as info:
        read_structures(p)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_bad_structure_is_named_by_its_file(tmp_path):
    from ase.io import write

    s = make_set(3)
    folder = tmp_path / "cifs"
    write_format(s, "cif-folder", folder)
    at = s.to_atoms()[1]
    at.pop()
    write(folder / "s001.cif", at, format="cif")
    with pytest.raises(StructureError, match=r"s001\.cif: has 4 atoms, expected 5"):
        read_structures(folder, template=s)


def test_detection_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(StructureError, match="folder holds no .cif or POSCAR"):
        detect_format(tmp_path / "empty")
    (tmp_path / "x.dat").write_text("1")
    with pytest.raises(InputError, match="pass --format"):
        detect_format(tmp_path / "x.dat")
    with pytest.raises(InputError, match="unknown format 'pdf'"):
        read_structures(tmp_path / "x.dat", format="pdf")
    with pytest.raises(StructureError, match="no such file or folder"):
        read_structures(tmp_path / "nope.cif")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "a.cif").write_text("")
    (mixed / "POSCAR").write_text("")
    with pytest.raises(InputError, match="both CIF and POSCAR"):
        detect_format(mixed)
    assert set(FORMATS) == {"extxyz", "cif", "poscar", "ase-db", "pymatgen-json"}


# ---------------------------------------------------------------------------- orientation
def test_rotated_and_pymatgen_cells_are_the_same_lattice():
    from pymatgen.io.ase import AseAtomsAdaptor

    s = make_set(2)
    rotated = []
    for at in s.to_atoms():
        at.rotate(90, "z", rotate_cell=True)
        at.rotate(30, "x", rotate_cell=True)
        rotated.append(at)
    back = StructureSet.from_atoms(rotated, template=s)
    assert np.allclose(back.lattice, s.lattice) and same_structures(back, s)
    # pymatgen's from_parameters puts c along z; ASE's cellpar_to_cell puts a along x
    from pymatgen.core import Lattice, Structure

    st = AseAtomsAdaptor.get_structure(s.to_atoms()[0])
    pm = Structure(Lattice.from_parameters(*st.lattice.parameters), st.species,
                   st.frac_coords)
    assert not np.allclose(pm.lattice.matrix, s.lattice, atol=1e-3)
    back = StructureSet.from_atoms([AseAtomsAdaptor.get_atoms(pm)], template=s)
    assert same_structures(back, s[:1])


def test_other_lengths_or_angles_are_refused_by_name():
    s = make_set(1)
    at = s.to_atoms()[0]
    stretched = at.copy()
    stretched.set_cell(stretched.cell.array * [[1.01], [1], [1]], scale_atoms=True)
    with pytest.raises(StructureError, match=r"structure 0: cell lengths \[5\.05, .*differ"):
        StructureSet.from_atoms([stretched], template=s)
    sheared = at.copy()
    cell = sheared.cell.array.copy()
    cell[1] = [1.0 - 0.1, np.sqrt(37 - 0.9 ** 2), 0.0]  # same |b|, other gamma
    sheared.set_cell(cell, scale_atoms=True)
    with pytest.raises(StructureError, match="structure 0: cell angles .* differ"):
        StructureSet.from_atoms([sheared], template=s)


def test_rotated_alloy_validation_gives_identical_metrics(tmp_path):
    """The new-user case of the issue: alloy-300K-narrow validation structures with cell and
    atoms rotated together by 90° about z score exactly as the originals."""
    from ase.io import write

    from dismai.datasets import is_built, load
    from dismai.workflows import evaluate, evaluate_file

    if not is_built("alloy-300K-narrow"):
        pytest.skip("alloy-300K-narrow not built")
    ds = load("alloy-300K-narrow")
    val = ds.val[:60]
    frames = val.to_atoms()
    for at in frames:
        at.rotate(90, "z", rotate_cell=True)
    write(tmp_path / "rotated.extxyz", frames, format="extxyz")
    a = evaluate(val, ds, progress=False).metrics
    b = evaluate_file(tmp_path / "rotated.extxyz", ds, progress=False).metrics
    assert a == b


def test_cli_evaluates_a_cif_folder_and_names_a_bad_format(tmp_path):
    from typer.testing import CliRunner

    from dismai.cli import app
    from dismai.datasets import is_built, load

    if not is_built("alloy-300K-narrow"):
        pytest.skip("alloy-300K-narrow not built")
    write_format(load("alloy-300K-narrow").val[:5], "cif-folder", tmp_path / "cifs")
    runner = CliRunner()
    res = runner.invoke(app, ["evaluate", str(tmp_path / "cifs"), "--dataset",
                              "alloy-300K-narrow", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "d_cluster" in res.output
    res = runner.invoke(app, ["evaluate", str(tmp_path / "cifs"), "--dataset",
                              "alloy-300K-narrow", "--format", "pdf"])
    assert res.exit_code == 2 and "unknown format 'pdf'" in res.output
