"""bench/quality.py's table and its section in BENCHMARKS.md (the runs themselves: bench/quality.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.quality import SECTION_END, SECTION_START, markdown, parse_args, write_section  # noqa: E402

ROW = {"seed": 1, "epochs": 50, "chosen_epoch": 41, "final_train_accuracy": 0.96, "best_val_accuracy": 1.0,
       "val_accuracy": 0.9375, "p_face_faces": 0.85, "p_face_comics": 0.1, "test_accuracy": 1.0,
       "test_interval": {"low": 0.51, "high": 1.0}, "meets_targets": True}


def _report(rows):
    return {"label": "defaults", "job_args": [], "started": "2026-12-02T08:00:00", "wall_s": 61.0, "rows": rows,
            "passed": sum(r["meets_targets"] for r in rows)}


def test_the_table_has_a_row_per_seed_and_says_how_many_meet_the_targets():
    text = markdown(_report([ROW, {**ROW, "seed": 2, "p_face_faces": 0.6, "meets_targets": False}]))
    assert "| 1 | 50 | 41 | 0.960 | 1.000 | 0.938 | 0.850 | 0.100 | 1.00 [0.51, 1.00] | pass |" in text
    assert "| 2 |" in text and "**FAIL**" in text and "1 of 2 seeds meet them" in text


def test_the_section_is_replaced_in_place_and_the_rest_kept(tmp_path: Path):
    page = tmp_path / "BENCHMARKS.md"
    page.write_text("# Benchmarks\n\nbefore\n")
    write_section(page, markdown(_report([ROW])))
    write_section(page, markdown(_report([{**ROW, "seed": 7}])))
    text = page.read_text()
    assert text.count(SECTION_START) == 1 and text.count(SECTION_END) == 1
    assert "| 7 |" in text and "| 1 |" not in text and text.startswith("# Benchmarks\n\nbefore\n")


def test_seeds_and_job_options_are_parsed():
    args = parse_args(["--seeds", "1,3", "--", "--epochs", "100"])
    assert args.seed_list == [1, 3] and args.job_args == ["--epochs", "100"]
