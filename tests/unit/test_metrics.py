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
