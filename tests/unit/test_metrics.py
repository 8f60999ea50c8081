import numpy as np
import pytest

from tfos_facecnn.metrics import classification_metrics, roc_auc


def test_metrics_match_a_hand_count():
    labels = [1, 1, 1, 0, 0, 0, 0, 1]
    probs = [0.9, 0.4, 0.7, 0.2, 0.6, 0.1, 0.3, 0.8]
    m = classification_metrics(labels, probs)
    # predicted: 1,0,1,0,1,0,0,1 -> tp=3 fn=1 fp=1 tn=3
    assert m["confusion_matrix"] == [[3, 1], [1, 3]]
    assert m["accuracy"] == 0.75 and m["precision"] == 0.75 and m["recall"] == 0.75
    assert m["f1"] == pytest.approx(0.75)
    assert m["count"] == 8


def test_auc_against_pairwise_definition():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.random(200), 2)  # ties on purpose
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairwise = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert roc_auc(labels, scores) == pytest.approx(pairwise)


def test_auc_undefined_with_one_class():
    assert classification_metrics([1, 1], [0.2, 0.9])["roc_auc"] is None


def test_wilson_intervals_match_known_values():
    from tfos_facecnn.metrics import wilson_interval

    eight_of_ten = wilson_interval(8, 10)
    assert eight_of_ten["low"] == pytest.approx(0.4902, abs=1e-4)
    assert eight_of_ten["high"] == pytest.approx(0.9433, abs=1e-4)
    all_four = wilson_interval(4, 4)
    assert all_four["low"] == pytest.approx(0.5101, abs=1e-4) and all_four["high"] == 1.0
    none_of_four = wilson_interval(0, 4)
    assert none_of_four["low"] == 0.0 and none_of_four["high"] == pytest.approx(0.4899, abs=1e-4)
    assert wilson_interval(0, 0) is None


def test_metrics_carry_intervals_and_say_when_few_images():
    m = classification_metrics([1, 1, 0, 0], [0.9, 0.8, 0.1, 0.2])
    assert m["accuracy"] == 1.0 and m["indicative_only"] is True
    assert m["intervals_95"]["accuracy"] == {"low": pytest.approx(0.5101, abs=1e-4), "high": 1.0,
                                             "successes": 4, "count": 4}
    assert m["intervals_95"]["precision"]["count"] == 2 and m["intervals_95"]["recall"]["count"] == 2
    many = classification_metrics([1, 0] * 20, [0.9, 0.1] * 20)
    assert many["indicative_only"] is False and many["intervals_95"]["accuracy"]["count"] == 40


def test_the_report_page_shows_intervals_and_the_small_sample_warning(tmp_path):
    from tfos_facecnn.report_page import write_report_page

    small = classification_metrics([1, 1, 0, 0], [0.9, 0.8, 0.1, 0.2])
    text = open(write_report_page(str(tmp_path), "t", small, {})).read()
    assert "**Indicative only: 4 test image(s).**" in text
    assert "| Accuracy | 1.0000 | 0.510 - 1.000 (4 of 4) |" in text
    large = classification_metrics([1, 0] * 20, [0.9, 0.1] * 20)
    assert "Indicative only" not in open(write_report_page(str(tmp_path / "b"), "t", large, {})).read()
