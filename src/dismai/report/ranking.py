"""Per-dataset ranks of the models and the spider chart of the paper's Fig. 10.

The paper ranks the models "based on their general performance on each dataset" without a
formula.  Ours is stated so it can be checked: on each dataset, every model (baselines
excluded) is ranked on each paper metric of its family (lower is better; ties share the
mean rank; a missing value ranks last), and the models are ordered by the mean of those
ranks (ties share the better rank).  Rank 1 is drawn outermost, as in Fig. 10.
"""

from __future__ import annotations

import numpy as np

from dismai.metrics.report_common import figure, save_png
from dismai.report.collect import Group
from dismai.report.tables import cell_of, metric_columns

__all__ = ["RANK_RULE", "dataset_ranks", "metric_ranks", "plot_spider"]

RANK_RULE = ("Per dataset, each model (baselines excluded) is ranked on each of its "
             "family's paper metrics (lower is better; ties share the mean rank; a missing "
             "value ranks last; the mean over repeats is used); models are then ordered by "
             "the mean of their metric ranks, ties sharing the better rank. Rank 1 is "
             "outermost.")


def _ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (1 = smallest); NaN ranks last."""
    v = np.where(np.isfinite(values), values, np.inf)
    order = np.argsort(v, kind="stable")
    ranks = np.empty(len(v))
    i = 0
    while i < len(v):
        j = i
        while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _per_metric(groups: list[Group]):
    """Per dataset with at least two models: (models, metrics, ranks[metric, model])."""
    for d in dict.fromkeys(g.dataset for g in groups):
        models = [g for g in groups if g.dataset == d and not g.baseline]
        metrics = metric_columns(models[0].family, models) if len(models) >= 2 else []
        if not metrics:
            continue
        means = [[cell_of(g, m).mean for m in metrics] for g in models]
        table = np.array([[np.nan if v is None else v for v in row] for row in means],
                         dtype=np.float64)
        yield d, models, metrics, np.array([_ranks(table[:, k]) for k in range(len(metrics))])


def dataset_ranks(groups: list[Group]) -> dict[str, dict[str, int]]:
    """dataset -> {model label: rank}; datasets with fewer than two models are left out."""
    out = {}
    for d, models, _, ranks in _per_metric(groups):
        mean_rank = ranks.mean(axis=0)
        out[d] = {g.label: int(1 + np.sum(mean_rank < r - 1e-12))
                  for g, r in zip(models, mean_rank, strict=True)}
    return out


def metric_ranks(groups: list[Group]) -> dict[str, dict[str, float]]:
    """'dataset: metric' -> {model label: rank on that metric} (the chart's axes when
    there are fewer than three datasets)."""
    from dismai.report.tables import short_title

    out = {}
    for d, models, metrics, ranks in _per_metric(groups):
        for k, m in enumerate(metrics):
            out[f"{d}: {short_title(m)}"] = {g.label: float(r)
                                            for g, r in zip(models, ranks[k], strict=True)}
    return out


def plot_spider(ranks: dict[str, dict[str, float]], path,
                title: str = "Model ranks per dataset (rank 1 outermost)") -> bool:
    """Spider chart: one axis per key of `ranks` (datasets, or dataset metrics), one
    polygon per model, rank 1 outermost.  Needs three axes; returns whether it drew."""
    datasets = list(ranks)
    if len(datasets) < 3:
        return False
    models = list(dict.fromkeys(m for d in datasets for m in ranks[d]))
    worst = int(np.ceil(max(max(r.values()) for r in ranks.values())))
    angles = np.linspace(0, 2 * np.pi, len(datasets), endpoint=False)
    fig = figure(6.5, 6.5)
    ax = fig.add_subplot(projection="polar")
    for m in models:
        radius = [worst + 1 - ranks[d].get(m, worst) for d in datasets]
        ax.plot(np.append(angles, angles[0]), np.append(radius, radius[0]), lw=1.6,
                marker="o", label=m)
    ax.set_xticks(angles)
    ax.set_xticklabels(datasets, fontsize=8)
    ax.set_yticks(range(1, worst + 1))
    ax.set_yticklabels([str(worst + 1 - k) for k in range(1, worst + 1)], fontsize=7)
    ax.set_ylim(0, worst + 0.3)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper right", bbox_to_anchor=(1.3, 1.1), fontsize=8)
    save_png(fig, path)
    return True
