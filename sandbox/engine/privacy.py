"""Disclosure control and differential privacy over an aggregate's exact group totals.

* Groups come from the public key sets of the group-by fields, in key-set order, never from the
  data: a rare key is never revealed by its presence, and out-of-set values are never shown.
* A group with fewer subjects than the minimum cell size is suppressed (the bureau's rule holds
  exactly), and so is one whose noisy count is under the minimum plus a margin τ;
  ``suppressed_groups`` counts them (zero-row groups included). Deciding on the exact count
  alone was an oracle no noise covered: filters that leave exactly ``T - 1`` other firms in a
  cell made "released or not" say, at any ε, whether the target matched the filter (a privacy
  sweep read a firm's exact registered capital off 2,288 such queries). The noisy count is the
  released ``count`` metric when the query has one and a subject has one row in it, else a count
  of subjects noised with a share of its own and not released. τ is chosen so that a cell at
  exactly ``T`` subjects (the only place the exact rule and the noisy one can disagree about one
  subject) is released with probability at most δ: the answer is (ε, δ)-differentially private,
  the thresholding of SmartNoise and of Google's DP libraries. Each answer's δ is the policy's
  ``delta_total`` times its share of the contract's ε (:func:`answer_delta`), so the ε of record,
  which cannot pass the contract's total, holds the δ of all its answers to ``delta_total``.
* ε is split evenly across the metrics (and the threshold's count, when it is not one of them);
  groups are disjoint, so each share covers all of them (parallel composition). Noise is drawn
  by diffprivlib's mechanisms with their default cryptographically secure generator; no seed,
  bound or scale comes from the client.

Sensitivities, for one subject added or removed, values clamped to the policy bounds ``[lo, hi]``,
each ``m`` times one row's, ``m`` the most rows of one subject the query can read
(:attr:`~sandbox.engine.spec.AggregateQuery.rows_per_subject`: a firm's five tax years, or one when
a filter pins the year): count ``m`` (geometric, so counts stay integers); sum ``m·max(|lo|, |hi|)``;
mean from a noisy count and a noisy sum centred on the bounds' midpoint (``m·(hi - lo) / 2``),
half the share each; histogram and quantile from a noisy count per bin (one row moves one bin:
``m``). Those ``m`` rows may fall in ``m`` groups, which is why the sensitivity is of the whole
answer and not of one group: the guarantee covers a subject, not a row (a firm's five years
charged as one row would have cost it five times the ε of record). The subject count of the
threshold moves by one in each of at most ``m`` groups: sensitivity ``m``, and each group's flip
is held to ``δ / m``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

from diffprivlib.mechanisms import Geometric, Laplace

from sandbox.engine.aggregate_sql import GroupKey, GroupTotals, bounds_of
from sandbox.engine.spec import AggregateQuery, Metric, MetricOp

# The probability that a cell released only because of its count's noise shows that it holds the
# minimum cell size exactly: the δ of an answer's (ε, δ) guarantee, where none is given.
THRESHOLD_DELTA = 1e-6


@dataclass(frozen=True)
class NoisyAnswer:
    """Released rows (group keys and noisy metrics), how many groups were suppressed, and the
    margin over the minimum cell size a group's noisy count had to reach."""

    rows: list[dict[str, Any]]
    suppressed_groups: int
    groups: int
    margin: int = 0


def answer_delta(delta_total: float, epsilon: float, epsilon_total: float) -> float:
    """An answer's δ: ``delta_total`` times its share of the contract's ε, so that answers whose ε
    adds up to at most ``epsilon_total`` have δ adding up to at most ``delta_total``."""
    return delta_total * epsilon / epsilon_total if epsilon < epsilon_total else delta_total


def threshold_margin(epsilon: float, rows_per_subject: int = 1, delta: float = THRESHOLD_DELTA) -> int:
    """τ for a subject count noised at ``epsilon`` with sensitivity ``m = rows_per_subject``: the
    two-sided geometric noise reaches τ with probability ``e^(-ε τ / m) / (1 + e^(-ε / m))``,
    under ``delta / m`` in each of the ``m`` groups one subject can be in."""
    m = rows_per_subject
    return math.ceil(m * math.log(m / delta) / epsilon)


def _count(value: int, epsilon: float, rows: int) -> int:
    return max(0, int(Geometric(epsilon=epsilon, sensitivity=rows).randomise(int(value))))


def _laplace(value: float, epsilon: float, sensitivity: float) -> float:
    if sensitivity == 0:
        return float(value)
    return float(Laplace(epsilon=epsilon, sensitivity=sensitivity).randomise(float(value)))


def _sum(query: AggregateQuery, metric: Metric, total: float, epsilon: float) -> float:
    assert metric.field is not None
    lo, hi = bounds_of(query, metric.field)
    noisy = _laplace(total, epsilon, query.rows_per_subject * max(abs(lo), abs(hi)))
    return round(max(noisy, 0.0) if lo >= 0 else noisy, 2)


def _mean(query: AggregateQuery, metric: Metric, count: int, total: float, epsilon: float) -> float:
    assert metric.field is not None
    lo, hi = bounds_of(query, metric.field)
    middle = (lo + hi) / 2
    rows = query.rows_per_subject
    noisy_count = max(1, _count(count, epsilon / 2, rows))
    noisy_centred = _laplace(total - count * middle, epsilon / 2, rows * (hi - lo) / 2)
    return round(min(max(middle + noisy_centred / noisy_count, lo), hi), 4)


def edges(query: AggregateQuery, metric: Metric) -> list[float]:
    """The bin edges of a histogram or quantile metric: equal widths across the policy bounds."""
    assert metric.field is not None
    lo, hi = bounds_of(query, metric.field)
    bins = metric.histogram_bins
    return [lo + (hi - lo) * i / bins for i in range(bins + 1)]


def _quantile(counts: list[int], bin_edges: list[float], q: float) -> float:
    """The q-quantile read off a (noisy) histogram, interpolating linearly inside the bin."""
    total = sum(counts)
    if total == 0:
        return round((bin_edges[0] + bin_edges[-1]) / 2, 4)
    target = q * total
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= target:
            fraction = (target - seen) / count
            width = bin_edges[index + 1] - bin_edges[index]
            return round(bin_edges[index] + fraction * width, 4)
        seen += count
    return round(bin_edges[-1], 4)


def _metric(query: AggregateQuery, metric: Metric, totals: GroupTotals, epsilon: float) -> Any:
    if metric.op is MetricOp.COUNT:
        return _count(totals.count, epsilon, query.rows_per_subject)
    if metric.op is MetricOp.SUM:
        return _sum(query, metric, totals.sums[metric.name], epsilon)
    if metric.op is MetricOp.MEAN:
        return _mean(query, metric, totals.count, totals.sums[metric.name], epsilon)
    counts = [_count(value, epsilon, query.rows_per_subject) for value in totals.bins[metric.name]]
    if metric.op is MetricOp.HISTOGRAM:
        return {"edges": edges(query, metric), "counts": counts}
    assert metric.q is not None
    return _quantile(counts, edges(query, metric), metric.q)


def group_keys(query: AggregateQuery) -> list[GroupKey]:
    """Every group the answer may hold: the product of the group-by fields' public key sets."""
    sets = [list(query.dataset.field(name).key_set or []) for name in query.group_by]
    return list(itertools.product(*sets))


def _empty(query: AggregateQuery) -> GroupTotals:
    """The totals of a group with no row: noised like any other, never released."""
    sums = {m.name: 0.0 for m in query.metrics if m.op in (MetricOp.SUM, MetricOp.MEAN)}
    bins = {
        m.name: [0] * m.histogram_bins
        for m in query.metrics
        if m.op in (MetricOp.HISTOGRAM, MetricOp.QUANTILE)
    }
    return GroupTotals(count=0, sums=sums, bins=bins)


def noisy_answer(
    query: AggregateQuery,
    totals: dict[GroupKey, GroupTotals],
    min_cell_size: int,
    delta: float = THRESHOLD_DELTA,
) -> NoisyAnswer:
    """The released rows: small cells suppressed, on the exact count and on a noisy one with its
    margin (see the module docstring), every metric noised with its share of ε."""
    per_subject = query.rows_per_subject
    # The released count counts subjects only at one row each; else subjects get their own count.
    counting = next((m for m in query.metrics if m.op is MetricOp.COUNT), None) if per_subject == 1 else None
    share = query.epsilon / (len(query.metrics) + (0 if counting is not None else 1))
    margin = threshold_margin(share, per_subject, delta)
    keys = group_keys(query)
    empty = _empty(query)
    rows: list[dict[str, Any]] = []
    for key in keys:
        # Every group is noised, whatever its exact count: skipping the draws for a cell under the
        # minimum (or with no row) made the answer's time say which cells held T rows, the very
        # oracle the noisy threshold closes (one group's draws take milliseconds).
        found = totals.get(key, empty)
        row: dict[str, Any] = dict(zip(query.group_by, key, strict=True))
        for metric in query.metrics:
            row[metric.name] = _metric(query, metric, found, share)
        if counting is not None:
            noisy_count = row[counting.name]
        else:
            noisy_count = _count(found.subject_count, share, per_subject)
        if found.subject_count < min_cell_size or noisy_count < min_cell_size + margin:
            continue  # a released count never shows a cell under the minimum either
        rows.append(row)
    return NoisyAnswer(rows=rows, suppressed_groups=len(keys) - len(rows), groups=len(keys), margin=margin)
