"""The joints of the package: registries, families, the error root, import layering."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dismai
from dismai.energy import available_potentials
from dismai.errors import DismaiError, UnknownNameError
from dismai.families import FAMILIES, get_family
from dismai.models import MODELS
from dismai.registry import Registry
from dismai.testing import check_family

SRC = Path(dismai.__file__).parent


@pytest.mark.parametrize("registry", [MODELS, FAMILIES], ids=["models", "families"])
def test_every_registered_name_loads(registry):
    for name in registry.names():
        assert registry.get(name) is not None


def test_every_energy_model_name_resolves():
    from dismai.energy.base import POTENTIALS

    assert set(available_potentials()) == {"sw-vink", "chgnet", "sevennet", "interface-mlip"}
    for name in POTENTIALS.names():
        assert callable(POTENTIALS.get(name))


def test_did_you_mean_and_error_root():
    r = Registry("widget", {"alpha": "dismai.errors:DismaiError"})
    with pytest.raises(UnknownNameError, match=r"unknown widget 'alpah' \(did you mean 'alpha'"):
        r.get("alpah")
    assert issubclass(UnknownNameError, DismaiError)
    with pytest.raises(DismaiError, match="did you mean 'cryingan'"):
        MODELS.get("cryingn")
    from dismai.datasets import get_spec

    with pytest.raises(DismaiError, match="did you mean 'a-si'"):
        get_spec("a-sii")


def test_every_user_error_class_derives_from_the_root():
    import dismai.errors as e

    for name in e.__all__:
        assert issubclass(getattr(e, name), DismaiError), name


@pytest.mark.parametrize("name", ["alloy", "a-si", "interface"])
def test_family_contract(name, tmp_path):
    check_family(name, tmp_path, max_val=20)


def test_interface_is_listed_and_refused_until_built(tmp_path):
    from typer.testing import CliRunner

    from dismai.cli import app

    r = CliRunner().invoke(app, ["datasets", "list"])
    assert r.exit_code == 0 and "interface" in r.output
    (tmp_path / "x.extxyz").write_text("")
    r = CliRunner().invoke(app, ["evaluate", str(tmp_path / "x.extxyz"), "--dataset",
                                 "interface"])
    assert r.exit_code == 2 and r.output.strip().splitlines() == [
        "error: dataset 'interface' is not built; run `dismai datasets build interface`"]


def _imports(path: Path) -> set[str]:
    """dismai modules imported anywhere in a file (module level and inside functions)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dismai"):
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("dismai"))
    return out


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


#: layers from the bottom: a module may import only from its own layer or lower ones
LAYERS = [
    ["dismai.errors", "dismai.registry", "dismai.fileio", "dismai.progress",
     "dismai.provenance"],
    ["dismai.structures", "dismai.crystals", "dismai.extxyz", "dismai.readers", "dismai.fcc",
     "dismai.interface_cell"],
    ["dismai.energy", "dismai.relax", "dismai.relax_batch", "dismai.relax_surrogate",
     "dismai.postprocess"],
    ["dismai.metrics", "dismai.evaluation", "dismai.learning"],
    ["dismai.datasets.alloy_recipe", "dismai.datasets.asi_recipe",
     "dismai.datasets.interface_recipe",
     "dismai.energy.distill"],  # a potential's recipe: candidates, teacher, validation metrics
    ["dismai.families"],
    ["dismai.datasets", "dismai.models", "dismai.report"],
    ["dismai.workflows"],
    ["dismai.cli", "dismai.testing"],  # the contract checks drive the CLI
]


def _layer(module: str) -> int:
    best, depth = None, -1
    for i, layer in enumerate(LAYERS):
        for prefix in layer:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > depth:
                best, depth = i, len(prefix)
    return best


def test_imports_only_point_down():
    """No module imports from a higher layer (lazy imports included): no cycles between
    layers, so e.g. metrics never import datasets and structures never import extxyz."""
    bad = []
    for path in SRC.rglob("*.py"):
        mod = _module_name(path)
        if mod == "dismai":
            continue
        mine = _layer(mod)
        assert mine is not None, f"{mod} is in no layer of this test"
        for imp in _imports(path):
            theirs = _layer(imp)
            if theirs is not None and theirs > mine:
                bad.append(f"{mod} (layer {mine}) imports {imp} (layer {theirs})")
    assert not bad, "\n".join(sorted(set(bad)))


def test_families_know_their_baselines_and_options():
    assert get_family("alloy").baselines == ("random", "shuffled-lattice")
    assert get_family("a-si").baselines == ("random",)
    assert "lattice_match" in get_family("alloy").options
    assert get_family("a-si").relaxes and not get_family("alloy").relaxes
    with pytest.raises(DismaiError, match="does not apply to the a-si family"):
        get_family("a-si").check_options({"lattice_match": "rotated"})
