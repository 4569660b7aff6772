"""The reconstruction metrics of the masked-atom model (Liu et al. 2024, "Validity",
"Similarity", "Novelty" and "Related metrics"; docs/masked-atom.md).

A test crystal is corrupted (atoms masked, every atom displaced), the network predicts
every atom's species and the fractional noise, and the *reconstruction* is the original
cell with

    Z~ = argmax of the 118 logits + 1          (every atom, masked or not, as published)
    P~ = wrap(noisy fractional positions - predicted fractional noise)

in the original atom order.  On pairs (original, reconstruction) this module computes:

* structural validity (every periodic distance >= 0.5 Å, `crystals.structure_valid`) and
  compositional validity (SMACT charge neutrality, `crystals.charge_neutral`) rates;
* compositional similarity (Eqn 4): the fraction of reconstructions whose species equal
  the original's at every atom;
* structural similarity (Eqn 5): 1 - mean over samples of delta(Z = Z~) d_m / S_m, with
  d_m the mean over atoms of the *minimum-image* distance |P_i - P~_i| and S_m the mean
  norm of the Cartesian noise that was added to the input.  Read literally, a sample whose
  composition differs adds 0 to the sum, i.e. counts as perfectly placed; we report that
  literal value (``structural_similarity_eqn5``), the mean over the compositionally
  identical samples only (``structural_similarity_matched``, what the text describes:
  "when the model decides to generate compositions identical to the originals") and over
  all samples (``structural_similarity_all``).  Returning the noisy input unchanged scores
  about 0 on the last two; a perfect denoiser 1;
* energy per atom of originals and reconstructions with an interatomic potential (CHGNet
  here; the paper used DFT single points), and of the noisy input with its true species
  (the do-nothing baseline);
* the species-replacement matrix of Fig. 5: over reconstructions that are structurally and
  compositionally valid but changed in composition, the count of (true species -> predicted
  species) at masked sites whose species changed, row-normalised, and its agreement with
  the data-mined substitution probabilities of Hautier et al. (2011) shipped in pymatgen.

`dismai.models.ssl_reconstruction.evaluate_reconstruction` corrupts a set with one of the
paper's masking strategies, runs a masked-atom network and returns all of the above.
"""

from __future__ import annotations

import functools

import numpy as np

from dismai.crystals import Crystal
from dismai.errors import InputError, StructureError
from dismai.metrics.crystals import charge_neutral, structure_valid

__all__ = ["STRATEGIES", "min_image_deviation", "composition_matches",
           "composition_similarity", "structural_similarity", "validity_flags", "validity_rates",
           "replacement_counts", "replacement_records", "substitution_probabilities",
           "compare_with_substitution", "crystal_energies", "reconstruction_metrics"]

#: masking strategies of Fig. 4: None = every atom of one species (once per species)
STRATEGIES = {"alpha": None, "beta": 0.15, "gamma": 0.30}


# ---------------------------------------------------------------------------- geometry
def _pairs(originals, recons):
    originals, recons = list(originals), list(recons)
    if len(originals) != len(recons):
        raise InputError(f"{len(originals)} originals for {len(recons)} reconstructions")
    for i, (o, r) in enumerate(zip(originals, recons, strict=True)):
        if o.n_atoms != r.n_atoms:
            raise StructureError(f"reconstruction {i} has {r.n_atoms} atoms, its original "
                                 f"{o.n_atoms}")
        if not np.allclose(o.lattice, r.lattice, atol=1e-6):
            raise StructureError(f"reconstruction {i} has another cell than its original")
    return originals, recons


_SHIFTS = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)],
                   dtype=np.float64)


def _min_image_norms(dfrac: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """(T,) shortest Cartesian length of dfrac (T, 3) + any lattice vector, for each row's
    cell (T, 3, 3): round to the nearest image, then search its 26 neighbours (exact for
    skewed cells too)."""
    dfrac = dfrac - np.round(dfrac)
    cand = dfrac[:, None, :] + _SHIFTS[None]  # (T, 27, 3)
    return np.linalg.norm(np.einsum("tki,tij->tkj", cand, cells), axis=-1).min(1)


def min_image_deviation(original: Crystal, recon: Crystal) -> np.ndarray:
    """(N,) periodic (minimum-image) distance in Å between each atom and its
    reconstruction (same cell, same atom order)."""
    (o,), (r,) = _pairs([original], [recon])
    return _min_image_norms(r.frac - o.frac, np.broadcast_to(o.lattice, (o.n_atoms, 3, 3)))


def _deviations(originals, recons) -> np.ndarray:
    """(M,) mean minimum-image deviation per pair."""
    if not originals:
        return np.zeros(0)
    dfrac = np.concatenate([r.frac - o.frac for o, r in zip(originals, recons, strict=True)])
    cells = np.concatenate([np.broadcast_to(o.lattice, (o.n_atoms, 3, 3)) for o in originals])
    d = _min_image_norms(dfrac, cells)
    n = np.array([o.n_atoms for o in originals])
    return np.add.reduceat(d, np.cumsum(n) - n) / n


# ---------------------------------------------------------------------------- similarity
def composition_matches(originals, recons) -> np.ndarray:
    """(M,) True where the reconstruction has the original's species at every atom (the
    delta of Eqn 4; the same composition in another atom order does not count)."""
    originals, recons = _pairs(originals, recons)
    return np.array([np.array_equal(o.numbers, r.numbers)
                     for o, r in zip(originals, recons, strict=True)], dtype=bool)


def composition_similarity(originals, recons) -> float:
    """Eqn 4: the fraction of reconstructions compositionally identical to the original."""
    m = composition_matches(originals, recons)
    return float(m.mean()) if len(m) else float("nan")


def structural_similarity(originals, recons, noise_scale) -> dict:
    """Eqn 5 in three readings (see the module doc).  noise_scale: (M,) S_m, the mean norm
    (Å) of the Cartesian noise added to each sample's input."""
    originals, recons = _pairs(originals, recons)
    s = np.asarray(noise_scale, dtype=np.float64).reshape(-1)
    if len(s) != len(originals):
        raise InputError(f"{len(s)} noise scales for {len(originals)} reconstructions")
    if len(s) and not (s > 0).all():
        raise InputError("every noise scale S must be > 0 (Eqn 5 divides by it)")
    ratio = _deviations(originals, recons) / s
    match = composition_matches(originals, recons)
    nan = float("nan")
    return {"structural_similarity_eqn5": float(1 - np.mean(match * ratio)) if len(s) else nan,
            "structural_similarity_matched": float(1 - ratio[match].mean()) if match.any()
            else nan,
            "structural_similarity_all": float(1 - ratio.mean()) if len(s) else nan,
            "deviation_over_noise": ratio}


# ---------------------------------------------------------------------------- validity
def _composition_key(c: Crystal):
    z, n = np.unique(c.numbers, return_counts=True)
    return tuple(zip(z.tolist(), n.tolist(), strict=True))


def validity_flags(crystals) -> tuple[np.ndarray, np.ndarray]:
    """(structurally valid, charge-neutral) per crystal; charge neutrality is computed once
    per composition, and a composition with an element SMACT has no data for (e.g. Lv, which
    an untrained network may predict) counts as not charge-neutral."""
    cache: dict = {}
    comp = []
    for c in crystals:
        key = _composition_key(c)
        if key not in cache:
            try:
                cache[key] = charge_neutral(c)
            except KeyError:  # smact: "Elemental data for Lv not found."
                cache[key] = False
        comp.append(cache[key])
    return (np.array([structure_valid(c) for c in crystals], dtype=bool),
            np.array(comp, dtype=bool))


def validity_rates(crystals, flags=None) -> dict:
    """Fractions structurally valid, compositionally valid and both."""
    s, c = flags if flags is not None else validity_flags(crystals)
    if not len(s):
        return {"structure_valid": float("nan"), "composition_valid": float("nan"),
                "valid": float("nan")}
    return {"structure_valid": float(s.mean()), "composition_valid": float(c.mean()),
            "valid": float((s & c).mean())}


# ---------------------------------------------------------------------------- replacements
def replacement_counts(originals, recons, masks=None, keep=None) -> dict:
    """{(true Z, predicted Z): count} over the sites whose species changed, in the pairs
    where `keep` (M,) is True (default all), at the sites where `masks` (a (N_m,) bool
    array per pair) is True (default every site)."""
    originals, recons = _pairs(originals, recons)
    counts: dict = {}
    for m, (o, r) in enumerate(zip(originals, recons, strict=True)):
        if keep is not None and not keep[m]:
            continue
        site = o.numbers != r.numbers
        if masks is not None:
            site &= np.asarray(masks[m], dtype=bool)
        for a, b in zip(o.numbers[site].tolist(), r.numbers[site].tolist(), strict=True):
            counts[(a, b)] = counts.get((a, b), 0) + 1
    return counts


def replacement_records(counts: dict) -> list[dict]:
    """The row-normalised replacement matrix as records {from, to, count, fraction}
    (fraction = count / all replacements of `from`), by `from` (Z), then count."""
    from ase.data import chemical_symbols

    rows: dict = {}
    for (a, _), n in counts.items():
        rows[a] = rows.get(a, 0) + n
    out = [{"from": chemical_symbols[a], "to": chemical_symbols[b], "count": int(n),
            "fraction": n / rows[a]} for (a, b), n in counts.items()]
    order = {s: i for i, s in enumerate(chemical_symbols)}
    return sorted(out, key=lambda r: (order[r["from"]], -r["count"], order[r["to"]]))


@functools.lru_cache(maxsize=1)
def substitution_probabilities() -> np.ndarray:
    """(119, 119) element-level P(B replaces A) from pymatgen's data-mined lambda table
    (Hautier et al. 2011): the table's joint probabilities p(a, b) = exp(lambda_ab) / Z over
    oxidation-state species are summed over the oxidation states of each element, the
    diagonal (an element replacing itself, e.g. Fe2+ -> Fe3+) is set to 0 and each row is
    normalised.  Rows of elements absent from the table are 0."""
    from pymatgen.analysis.structure_prediction.substitution_probability import (
        SubstitutionProbability,
    )

    sp = SubstitutionProbability()
    species = sorted(sp.species, key=str)
    z = np.array([s.Z for s in species])
    pairs = getattr(sp, "_l", None)  # {frozenset of 1-2 species: lambda}, else the slow way
    if isinstance(pairs, dict):
        index = {s: i for i, s in enumerate(species)}
        lam = np.full((len(species), len(species)), float(sp.alpha))
        for key, value in pairs.items():
            a, b = (tuple(key) * 2)[:2] if len(key) == 1 else tuple(key)
            lam[index[a], index[b]] = lam[index[b], index[a]] = value
    else:
        lam = np.array([[sp.get_lambda(a, b) for b in species] for a in species])
    joint = np.exp(lam) / sp.Z
    onehot = np.zeros((len(species), 119))
    onehot[np.arange(len(species)), z] = 1.0
    elem = onehot.T @ joint @ onehot  # (119, 119) summed over oxidation states
    np.fill_diagonal(elem, 0.0)
    total = elem.sum(1, keepdims=True)
    return np.divide(elem, total, out=np.zeros_like(elem), where=total > 0)


def compare_with_substitution(counts: dict, top: int = 3) -> dict:
    """Agreement of a replacement count matrix with `substitution_probabilities`.

    spearman: rank correlation between the model's row fractions and the table's P(B | A)
    over the pairs the model produced whose elements are both in the table; top3_overlap:
    mean over replaced elements A of |model's top 3 of A  ∩  table's top 3 of A| / |model's
    top 3 of A|; top1_in_table_top3: the fraction of replaced elements whose most frequent
    model replacement is among the table's top 3."""
    from scipy.stats import spearmanr

    table = substitution_probabilities()
    known = table.sum(1) > 0
    rows: dict = {}
    for (a, b), n in counts.items():
        if known[a] and known[b]:
            rows.setdefault(a, {})[b] = n
    model_p, table_p, overlap, top1 = [], [], [], []
    for a, row in rows.items():
        total = sum(row.values())
        ranked = sorted(row, key=lambda b: (-row[b], b))[:top]
        ref = set(np.argsort(-table[a], kind="stable")[:top].tolist())
        overlap.append(len(set(ranked) & ref) / len(ranked))
        top1.append(ranked[0] in ref)
        for b, n in row.items():
            model_p.append(n / total)
            table_p.append(table[a, b])
    rho = (float(spearmanr(model_p, table_p).statistic)
           if len(model_p) >= 3 and len(set(model_p)) > 1 and len(set(table_p)) > 1
           else float("nan"))
    nan = float("nan")
    return {"spearman": rho, "n_pairs": len(model_p), "n_replaced_species": len(rows),
            "top3_overlap": float(np.mean(overlap)) if overlap else nan,
            "top1_in_table_top3": float(np.mean(top1)) if top1 else nan}


# ---------------------------------------------------------------------------- energy
def crystal_energies(crystals, energy, batch_size: int = 32) -> np.ndarray:
    """(M,) energy per atom (eV) of each crystal; NaN where the potential fails.

    energy: an EnergyModel ('chgnet' is evaluated in CHGNet's own batches), a registered
    name, or a function (list of Crystal) -> (M,) eV/atom."""
    from dismai.energy import get_energy_model

    crystals = list(crystals)
    if isinstance(energy, str):
        energy = get_energy_model(energy)
    load = getattr(energy, "load", None)
    net = load() if callable(load) else None
    if net is not None and hasattr(net, "predict_structure"):  # CHGNet
        return _chgnet_energies(net, crystals, getattr(energy, "batch_size", batch_size))
    if hasattr(energy, "calculator"):
        calc = energy.calculator()
        out = np.full(len(crystals), np.nan)
        for i, c in enumerate(crystals):
            atoms = c.to_ase()
            atoms.calc = calc
            try:
                out[i] = atoms.get_potential_energy() / c.n_atoms
            except Exception:  # a potential that cannot score this structure
                pass
        return out
    if callable(energy):
        return np.asarray(energy(crystals), dtype=np.float64).reshape(len(crystals))
    raise InputError(f"energy must be an energy model, its name or a function, not "
                     f"{type(energy).__name__}")


def _chgnet_energies(net, crystals, batch_size: int) -> np.ndarray:
    import warnings

    per_atom = getattr(net, "is_intensive", True)

    def run(structs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            preds = net.predict_structure(structs, task="e", batch_size=batch_size)
        preds = [preds] if isinstance(preds, dict) else preds
        return [float(p["e"]) if per_atom else float(p["e"]) / len(s)
                for p, s in zip(preds, structs, strict=True)]

    out = np.full(len(crystals), np.nan)
    for start in range(0, len(crystals), batch_size):
        part = crystals[start:start + batch_size]
        structs = [c.to_pymatgen() for c in part]
        try:
            out[start:start + len(part)] = run(structs)
        except Exception:  # one bad structure spoils a batch: score them one by one
            for j, s in enumerate(structs):
                try:
                    out[start + j] = run([s])[0]
                except Exception:
                    pass
    return out


# ---------------------------------------------------------------------------- all metrics
def reconstruction_metrics(originals, recons, noise_scale, masks=None, energy=None,
                           noisy=None) -> dict:
    """Every metric of the module doc for pairs (original, reconstruction); originals may
    repeat (one entry per corrupted sample).  masks: per pair, which sites were masked
    (default all); energy: None or see `crystal_energies`; noisy: the noisy inputs with
    their true species (for the energy baseline)."""
    originals, recons = _pairs(originals, recons)
    flags = validity_flags(recons)
    match = composition_matches(originals, recons)
    sim = structural_similarity(originals, recons, noise_scale)
    ratio = sim.pop("deviation_over_noise")
    out = {"n_samples": len(recons), **validity_rates(recons, flags),
           "composition_similarity": float(match.mean()) if len(match) else float("nan"),
           **sim,
           "mean_deviation_over_noise": float(ratio.mean()) if len(ratio) else float("nan"),
           "mean_noise_angstrom": float(np.mean(noise_scale)) if len(ratio) else float("nan")}
    uniq = {id(o): o for o in originals}
    out["originals"] = {"n": len(uniq), **validity_rates(list(uniq.values()))}
    keep = flags[0] & flags[1] & ~match
    counts = replacement_counts(originals, recons, masks, keep)
    out["n_valid_changed"] = int(keep.sum())
    out["replacements"] = replacement_records(counts)
    out["substitution_comparison"] = compare_with_substitution(counts)
    if energy is not None:
        if isinstance(energy, str):  # load the potential once for the three sets
            from dismai.energy import get_energy_model

            energy = get_energy_model(energy)
        out["energy"] = _energy_summary(originals, recons, noisy, match, energy)
    return out


def _energy_summary(originals, recons, noisy, match, energy) -> dict:
    uniq: dict = {}
    for o in originals:
        uniq.setdefault(id(o), o)
    keys = list(uniq)
    e_uniq = dict(zip(keys, crystal_energies(list(uniq.values()), energy), strict=True))
    e_orig = np.array([e_uniq[id(o)] for o in originals])
    e_rec = crystal_energies(recons, energy)
    d = e_rec - e_orig

    def mean(v):
        v = v[np.isfinite(v)]
        return float(v.mean()) if len(v) else float("nan")

    out = {"energy_per_atom_original": mean(e_orig), "energy_per_atom_reconstruction":
           mean(e_rec), "delta_e_per_atom": mean(d), "delta_e_per_atom_matched": mean(d[match]),
           "median_delta_e_per_atom": float(np.nanmedian(d)) if np.isfinite(d).any()
           else float("nan"), "n_failed": int((~np.isfinite(d)).sum())}
    if noisy is not None:
        dn = crystal_energies(list(noisy), energy) - e_orig
        out["delta_e_per_atom_noisy_input"] = mean(dn)
        out["delta_e_per_atom_noisy_input_matched"] = mean(dn[match])
    return out
