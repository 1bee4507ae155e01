"""Agreement figures against cases derived by hand (issue 2 §5)."""

import json

import krippendorff
import numpy as np
import pytest

from annotation.agreement import (
    alpha_from_patterns, bootstrap_alpha_ci, cohen, compute_agreement, fleiss, from_arrays, group_values,
    krippendorff_alpha, load_csv, value_patterns,
)
from annotation.ratings import RatingsCsvError


def _rows(spec):
    """spec: [(item, annotator, group, value)]"""
    items, anns, groups, vals = zip(*spec)
    return items, groups, anns, vals


def test_cross_group_agreement_and_within_1():
    spec = [("i1", "a", "A", 4), ("i1", "b", "B", 4), ("i1", "c", "C", 4),
            ("i2", "a", "A", 3), ("i2", "b", "B", 4), ("i2", "c", "C", 4),
            ("i3", "a", "A", 1), ("i3", "b", "B", 5), ("i3", "c", "C", 3),
            ("i4", "a", "A", 5), ("i4", "b", "B", 5)]          # not rated by C: not in the denominator
    items, groups, anns, vals = _rows(spec)
    r = compute_agreement({"coherence": from_arrays("coherence", "likert", items, groups, anns, vals)}, bootstrap=0)
    c = r["criteria"]["coherence"]
    assert c["n_items"] == 4 and c["n_items_all_groups"] == 3 and c["n_ratings"] == 11
    assert c["cross_group_agreement"] == pytest.approx(1 / 3)
    assert c["agreement_within_1"] == pytest.approx(2 / 3)
    a = c["groups"]["A"]
    assert a["mean"] == pytest.approx(13 / 4) and a["distribution"] == {"1": 1, "2": 0, "3": 1, "4": 1, "5": 1}
    assert a["sd"] == pytest.approx(np.std([4, 3, 1, 5], ddof=1))
    assert "same number" in c["fleiss_kappa_note"] and c["fleiss_kappa"] is None
    assert set(c["pairwise_kappa"]) == {"A|B", "A|C", "B|C"}


@pytest.mark.parametrize("ratings, expected", [([2, 4], 3), ([3, 4], 3), ([2, 3, 5], 3), ([4, 5, 5, 1], 4), ([5], 5)])
def test_likert_group_value_is_median_rounded_down(ratings, expected):
    counts = np.bincount(np.array(ratings) - 1, minlength=5).reshape(1, 1, 5)
    value, present = group_values(counts, "likert")
    assert value[0, 0] == expected and present[0, 0]


@pytest.mark.parametrize("passes, fails, expected", [(1, 1, 0), (2, 1, 1), (0, 3, 0), (2, 2, 0), (1, 0, 1)])
def test_passfail_group_value_is_majority_and_ties_fail(passes, fails, expected):
    counts = np.array([fails, passes]).reshape(1, 1, 2)
    assert group_values(counts, "passfail")[0][0, 0] == expected


def test_several_annotators_per_group_use_group_values():
    # group A: two annotators (pass, fail → tie → fail); group B: fail → they agree
    items, groups, anns, vals = _rows([("x", "a1", "A", 1), ("x", "a2", "A", 0), ("x", "b1", "B", 0)])
    c = compute_agreement({"t": from_arrays("t", "passfail", items, groups, anns, vals)}, bootstrap=0)["criteria"]["t"]
    assert c["cross_group_agreement"] == 1.0 and c["groups"]["A"]["pass_rate"] == 0.5


def test_krippendorff_alpha_nominal_hand_case():
    # units (1,1), (0,0), (1,0): o = [[2,1],[1,2]], alpha = 1 - 5*2/18 = 4/9
    vc = np.array([[0, 2], [2, 0], [1, 1]])
    alpha, note = krippendorff_alpha(vc, "passfail")
    assert alpha == pytest.approx(4 / 9) and note is None
    patterns, freq = value_patterns(vc)
    assert alpha_from_patterns(patterns, freq[None], "passfail")[0] == pytest.approx(4 / 9)


def test_alpha_pattern_form_equals_package_on_a_resample():
    rng = np.random.default_rng(1)
    vc = np.array([rng.multinomial(rng.integers(1, 5), [0.1, 0.2, 0.3, 0.25, 0.15]) for _ in range(300)])
    idx = rng.integers(0, len(vc), len(vc))
    patterns, freq = value_patterns(vc)
    keys = {tuple(p): i for i, p in enumerate(patterns)}
    w = np.zeros(len(patterns))
    for i in idx:
        w[keys[tuple(vc[i])]] += 1
    pkg = krippendorff.alpha(value_counts=vc[idx][vc[idx].sum(1) >= 2], value_domain=[1, 2, 3, 4, 5],
                             level_of_measurement="ordinal")
    assert alpha_from_patterns(patterns, w[None], "likert")[0] == pytest.approx(pkg)


def test_bootstrap_interval_is_fixed_seed_and_brackets_alpha():
    rng = np.random.default_rng(2)
    truth = rng.integers(1, 6, 400)
    vc = np.stack([np.bincount(np.clip(t + rng.integers(-1, 2, 3), 1, 5) - 1, minlength=5) for t in truth])
    alpha, _ = krippendorff_alpha(vc, "likert")
    ci = bootstrap_alpha_ci(vc, "likert")
    assert ci == bootstrap_alpha_ci(vc, "likert") and ci[0] < alpha < ci[1] and ci[1] - ci[0] < 0.2


def test_fleiss_hand_case_and_undefined_cases():
    assert fleiss(np.array([[2, 0], [0, 2], [1, 1]]))[0] == pytest.approx(1 / 3)
    assert fleiss(np.array([[1, 0], [0, 1]]))[0] is None
    value, note = fleiss(np.array([[3, 0], [3, 0]]))
    assert value is None and "same value" in note


def test_cohen_kappa_hand_cases():
    assert cohen(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0]), "passfail") == pytest.approx(0.5)
    assert cohen(np.array([1, 5]), np.array([5, 1]), "likert") == pytest.approx(-1.0)
    # the full label set 1..5 matters: with only the observed labels this would be 0.5
    assert cohen(np.array([1, 2, 5]), np.array([2, 1, 5]), "likert") == pytest.approx(46 / 52)


def test_csv_scales_aliases_and_bad_rows(tmp_path):
    f = tmp_path / "r.csv"
    f.write_text("item,criterion,annotator,group,value\n"
                 "1,memory_linking,a,A,yes\n1,memory_linking,b,B,FALSE\n"
                 "1,fluency,a,A,4\n1,fluency,b,B,4\n"
                 "1,ok_check,a,A,1\n1,ok_check,b,B,0\n")
    data = load_csv(f)
    assert {n: d.scale for n, d in data.items()} == {"memory_linking": "passfail", "fluency": "likert", "ok_check": "passfail"}
    f.write_text("item,criterion,annotator,group,value\n"
                 "1,coherence,a,A,7\n1,coherence,b,B,3\n1,coherence,a,B,3\n2,coherence,,A,3\n")
    with pytest.raises(RatingsCsvError) as e:
        load_csv(f)
    assert [p.line for p in e.value.problems] == [2, 4, 5]
    assert "line 2" in str(e.value)


def test_agreement_cli_json_shape(tmp_path, capsys):
    from desktop.cli import main

    f = tmp_path / "r.csv"
    rows = ["item,criterion,annotator,group,value"]
    for i in range(20):
        for g in "ABC":
            rows.append(f"i{i},consistency,{g}1,{g},{3 + (i + ord(g)) % 3}")
            rows.append(f"i{i},memory_tagging,{g}1,{g},{'pass' if (i * ord(g)) % 4 else 'fail'}")
    f.write_text("\n".join(rows) + "\n")
    assert main(["agreement", str(f), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for name, scale in (("consistency", "likert"), ("memory_tagging", "passfail")):
        c = out["criteria"][name]
        assert c["scale"] == scale
        for key in ("n_items", "n_ratings", "groups", "cross_group_agreement", "agreement_within_1",
                    "krippendorff_alpha", "krippendorff_alpha_ci", "fleiss_kappa", "fleiss_kappa_note", "pairwise_kappa"):
            assert key in c
        assert set(c["groups"]) == {"A", "B", "C"} and set(c["pairwise_kappa"]) == {"A|B", "A|C", "B|C"}
        assert c["fleiss_kappa"] is not None and len(c["krippendorff_alpha_ci"]) == 2
    bad = tmp_path / "bad.csv"
    bad.write_text("item,criterion,annotator,group,value\nx,coherence,a,A,nine\n")
    assert main(["agreement", str(bad)]) == 2
    assert "line 2" in capsys.readouterr().err
