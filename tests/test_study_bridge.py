"""Self-play episodes into a study as a model-quality campaign, and eval reports into the study, through the
annotation side's public API (desktop.study_bridge); the same from the memlab CLI's --study options."""

import json

import pytest

from annotation.db import StudyError
from annotation.eval_reports import eval_reports
from desktop.study_bridge import eval_report_payload, import_selfplay, store_eval_report
from engine.data.corpus.generator import generate_episodes
from engine.data.episode_format import write_episodes


@pytest.fixture
def selfplay_file(tmp_path):
    path = tmp_path / "selfplay.json"
    write_episodes(path, generate_episodes(3, seed=11))
    return path


def test_selfplay_file_becomes_a_model_campaign_over_exactly_its_episodes(tmp_path, selfplay_file):
    study = tmp_path / "s.db"
    write_episodes(tmp_path / "other.json", generate_episodes(2, seed=99))
    from annotation.db import init_study
    from annotation.importer import import_file

    init_study(study).close()
    import_file(study, tmp_path / "other.json")  # episodes that are not self-play stay out of the campaign
    result, camp = import_selfplay(study, selfplay_file, "table4")
    assert result.episodes == 3 and camp.preset == "model" and camp.n_items == 3  # one item per episode
    assert [c.name for c in camp.criteria] == ["humanness", "engagingness", "memorability"]
    with pytest.raises(StudyError, match="table4"):
        import_selfplay(study, selfplay_file, "table4")  # the name is taken: said before anything is written


def test_eval_report_stored_with_intervals(tmp_path, selfplay_file):
    study = tmp_path / "s.db"
    import_selfplay(study, selfplay_file, "table4")
    report = {"n": 20, "systems": {"emma": {"bleu1": 0.2, "bleu1_ci": [0.1, 0.3]},
                                   "rag": {"bleu1": 0.1, "bleu1_ci": [0.05, 0.2]}},
              "meta": {"data": "starter.json"}}
    payload = eval_report_payload(report, data="starter.json")
    assert payload["metrics"]["emma"]["bleu1"] == {"value": 0.2, "low": 0.1, "high": 0.3, "n": 20}
    where = store_eval_report(study, report, campaign="table4")
    assert "table4" in where
    (rep,) = eval_reports(study, "table4")
    assert rep.systems == ["emma", "rag"] and rep.data == "starter.json"
    assert {(r["system"], r["metric"], r["value"]) for r in rep.metric_rows()} == {("emma", "bleu1", 0.2),
                                                                                 ("rag", "bleu1", 0.1)}


def test_selfplay_cli_study_option_without_campaign_is_an_error(tmp_path, selfplay_file, capsys):
    from desktop.cli import main

    rc = main(["selfplay", "--seeds", str(selfplay_file), "--episodes", "1", "--out", str(tmp_path / "o.json"),
               "--study", str(tmp_path / "s.db")])
    assert rc == 2 and "--campaign" in capsys.readouterr().err


def test_studies_page_imports_selfplay_as_a_campaign(qtbot, tmp_path, selfplay_file):
    pytest.importorskip("pytestqt")
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent / "gui"))
    from study_helpers import make_ctx

    from desktop.pages.studies import StudiesPage

    study = tmp_path / "s.db"
    page = StudiesPage(make_ctx(tmp_path, None))
    qtbot.addWidget(page)
    assert page.create_study(str(study))
    assert page.selfplay_btn.isEnabled()
    page.import_selfplay(str(selfplay_file))
    qtbot.waitUntil(lambda: not page.busy(), timeout=60_000)
    assert page.campaign_combo.currentText() == "model-selfplay"
    from annotation.campaigns import get_campaign

    assert get_campaign(study, "model-selfplay").preset == "model"
