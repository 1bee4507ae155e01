"""Benchmark: agreement for a synthetic study of 100,000 items × 3 groups × 8 criteria.

Prints one JSON line: the median of 5 runs of the whole computation (:func:`compute_agreement`
over the 8 MiSC criteria) with and without the bootstrap interval of Krippendorff's α, plus the
reference time of one plain ``krippendorff.alpha`` call over the same data measured in the same
run (the ratio tells how many such calls the whole computation costs). Target (docs/architecture.md, "Performance targets"):
< 1 s on the 2-core build machine.

    python bench/agreement.py [--items 100000] [--repeats 5] [--no-bootstrap]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation.agreement import (  # noqa: E402
    LIKERT_CRITERIA, PASSFAIL_CRITERIA, CriterionRatings, compute_agreement, counts_per_item_group,
)
import krippendorff  # noqa: E402


def synthetic(n_items: int, seed: int = 0) -> dict[str, CriterionRatings]:
    """3 groups of 4 annotators; each item rated once per group (split overlap) with noise."""
    rng = np.random.default_rng(seed)
    groups = np.tile(np.arange(3), n_items)
    items = np.repeat(np.arange(n_items), 3)
    annotators = groups * 4 + rng.integers(0, 4, len(items))
    data = {}
    for name in LIKERT_CRITERIA:
        truth = rng.choice([3, 4, 4, 5, 5], n_items)
        values = np.clip(np.repeat(truth, 3) + rng.choice([-1, 0, 0, 0, 1], len(items)), 1, 5)
        data[name] = CriterionRatings(name, "likert", items, groups, annotators, values, ["A", "B", "C"], n_items)
    for name in PASSFAIL_CRITERIA:
        truth = rng.random(n_items) < 0.85
        flip = rng.random(len(items)) < 0.1
        values = (np.repeat(truth, 3) ^ flip).astype(np.int64)
        data[name] = CriterionRatings(name, "passfail", items, groups, annotators, values, ["A", "B", "C"], n_items)
    return data


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-bootstrap", action="store_true", help="only time the computation without the α interval")
    args = ap.parse_args(argv)
    data = synthetic(args.items)
    compute_agreement(data, bootstrap=0)  # warm-up (imports, allocator)
    out = {"bench": "agreement", "items": args.items, "groups": 3, "criteria": len(data),
           "ratings": int(sum(len(d.values) for d in data.values())), "repeats": args.repeats}
    out["seconds_no_bootstrap"] = round(timed(lambda: compute_agreement(data, bootstrap=0), args.repeats), 4)
    if not args.no_bootstrap:
        out["seconds_with_bootstrap_1000"] = round(timed(lambda: compute_agreement(data, bootstrap=1000), args.repeats), 4)
    vcs = [(counts_per_item_group(d).sum(1), d.scale) for d in data.values()]

    def package_calls():
        for vc, scale in vcs:
            krippendorff.alpha(value_counts=vc, value_domain=[1, 2, 3, 4, 5] if scale == "likert" else [0, 1],
                               level_of_measurement="ordinal" if scale == "likert" else "nominal")
    kripp = timed(package_calls, args.repeats)
    ref = kripp / len(vcs)
    out["seconds_krippendorff_package_point_estimates"] = round(kripp, 4)
    out["seconds_everything_else_no_bootstrap"] = round(out["seconds_no_bootstrap"] - kripp, 4)
    out["reference_one_krippendorff_alpha_call_s"] = round(ref, 4)
    main_s = out.get("seconds_with_bootstrap_1000", out["seconds_no_bootstrap"])
    out["ratio_to_reference"] = round(main_s / ref, 2)
    out["target_s"] = 1.0
    out["meets_target"] = main_s < 1.0
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
