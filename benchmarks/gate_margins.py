"""Is the learning gate passable on a small dataset?  The validation split (what a perfect
generator would produce) against `random`, as generated and after relaxation, with the
gate's verdict; docs/datasets.md quotes the margins.

    python benchmarks/gate_margins.py [--dataset a-si-64] [--n 300]
"""

from __future__ import annotations

import argparse


def main(argv=None) -> int:
    from dismai.datasets import load
    from dismai.learning import learning_gate
    from dismai.models import create_model
    from dismai.workflows import evaluate

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="a-si-64")
    p.add_argument("--n", type=int, default=300, help="random structures")
    args = p.parse_args(argv)
    ds = load(args.dataset)
    rnd = create_model("random")
    rnd.fit(ds.train)
    ev_v = evaluate(ds.val, ds, progress=False, as_generated=True, near_copies=False)
    ev_r = evaluate(rnd.sample(args.n, seed=0), ds, progress=False, as_generated=True,
                    near_copies=False)

    def interval(m):
        return f"[{m['value'] - m['lower_error']:.4g}, {m['value'] + m['upper_error']:.4g}]"

    gate = ds.family.gate_metrics  # the family's own, e.g. d_motif/d_rdf/d_angle for a-Si
    raw_names = [k for k, where in gate if where == "as_generated"]
    for name, ev in (("validation", ev_v), ("random", ev_r)):
        raw = ev.header["metrics_as_generated"]
        cells = [f"{k} {interval(raw[k])}" for k in raw_names]
        cells += [f"{k} {interval(ev.metrics[k])}" for k, where in gate if where == "relaxed"]
        relaxed = ", ".join(f"{k} {ev.metrics[k]['value']:.4g}" for k in raw_names)
        print(f"{name}: gate metrics {'; '.join(cells)}; relaxed {relaxed}")
    print(learning_gate(ev_v, ev_r, gate).summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
