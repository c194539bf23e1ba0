"""Acceptance on a real Fashion-MNIST run (Debian's copy, else the user's visiontrain cache): the eval files agree
with scikit-learn computed independently from predictions.csv, and Grad-CAM works on the run (report section,
`explain` = the evaluation).

One simple-cnn epoch on 6,000 training images (val_fraction 0.9 keeps it short on 2 cores); the test split is the
full 10,000 images either way.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import visiontrain
from realdata import fashion_arrays

TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def run(tmp_path_factory, fashion_dir) -> Path:
    root = tmp_path_factory.mktemp("fashion")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VISIONTRAIN_HOME", str(root / "home"))
        result = visiontrain.train(dataset="fashion-mnist", data_dir=str(fashion_dir), model="simple-cnn", epochs=1,
                                   val_fraction=0.9, batch_size=64, augment="none", precision="fp32", threads=2,
                                   progress="none", runs_dir=str(root), name="fashion-simple-cnn")
    return result.path


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_eval_files_match_sklearn_from_predictions_csv(run):
    metrics_module = pytest.importorskip("sklearn.metrics")
    folder = run / "eval" / "test"
    metrics = json.loads((folder / "metrics.json").read_text())
    classes = [row["class"] for row in metrics["per_class"]]
    header, *rows = read_csv(folder / "predictions.csv")
    assert header[:4] == ["image", "true", "predicted", "confidence"] and len(classes) == 10
    assert [row[0] for row in rows] == [f"#{i}" for i in range(10_000)]  # the test split in its file order
    index = {name: i for i, name in enumerate(classes)}
    y_true = np.array([index[row[1]] for row in rows])
    y_pred = np.array([index[row[2]] for row in rows])
    labels = list(range(len(classes)))

    matrix = metrics_module.confusion_matrix(y_true, y_pred, labels=labels)
    assert matrix.sum() == 10_000 == metrics["n"] and (matrix.sum(1) == 1_000).all()  # 1,000 test images a class
    assert metrics["confusion_matrix"] == matrix.tolist()
    csv_header, *csv_rows = read_csv(folder / "confusion_matrix.csv")
    assert csv_header[1:] == classes and [row[0] for row in csv_rows] == classes
    assert [[int(v) for v in row[1:]] for row in csv_rows] == matrix.tolist()

    precision, recall, f1, support = metrics_module.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    assert np.allclose(recall, np.diag(matrix) / matrix.sum(1), rtol=0, atol=1e-12)  # recall = diagonal / row sum
    assert np.allclose(precision, np.diag(matrix) / np.maximum(matrix.sum(0), 1), rtol=0, atol=1e-12)
    per_class_csv = read_csv(folder / "per_class.csv")
    assert per_class_csv[0] == ["class", "precision", "recall", "f1", "support"]
    for k, (row, line) in enumerate(zip(metrics["per_class"], per_class_csv[1:])):
        assert row["support"] == int(line[4]) == support[k]
        for column, name, expected in ((1, "precision", precision[k]), (2, "recall", recall[k]), (3, "f1", f1[k])):
            assert abs(row[name] - expected) <= TOLERANCE, (classes[k], name)
            assert abs(float(line[column]) - expected) <= 5e-5 + 1e-12, (classes[k], name)  # 4 decimals in the CSV

    for average in ("macro", "weighted"):
        expected = metrics_module.precision_recall_fscore_support(y_true, y_pred, labels=labels, average=average,
                                                                  zero_division=0)[:3]
        weights = [row["support"] if average == "weighted" else 1 for row in metrics["per_class"]]
        for name, value in zip(("precision", "recall", "f1"), expected):
            mine = np.average([row[name] for row in metrics["per_class"]], weights=weights)
            assert abs(mine - value) <= TOLERANCE, (average, name)
        assert abs(metrics[f"{average}_f1"] - expected[2]) <= TOLERANCE
    assert abs(metrics["balanced_accuracy"] - metrics_module.balanced_accuracy_score(y_true, y_pred)) <= TOLERANCE
    assert abs(metrics["accuracy"] - metrics_module.accuracy_score(y_true, y_pred)) <= TOLERANCE
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test_acc"] == metrics["accuracy"] and summary["dataset"]["test"] == 10_000
    assert 0.5 < metrics["accuracy"] < 0.99  # a model that learnt something and still makes mistakes to explain


def test_grad_cam_on_the_real_run(run, tmp_path):
    from PIL import Image

    from visiontrain.explain import explain_paths

    page = (run / "report.html").read_text()
    section = page.split('<section id="gradcam">')[1].split("</section>")[0]
    assert section.count("data:image/png;base64,") == 1 and (run / "plots" / "gradcam.png").is_file()
    # 4 misclassified and 4 correct test images as PNG files: explain predicts what the evaluation predicted
    _, *rows = read_csv(run / "eval" / "test" / "predictions.csv")
    wrong = [i for i, row in enumerate(rows) if row[1] != row[2]][:4]
    right = [i for i, row in enumerate(rows) if row[1] == row[2]][:4]
    images = fashion_arrays()[2]  # the test images, as the named dataset reads them
    (tmp_path / "images").mkdir()
    for i in wrong + right:
        Image.fromarray(images[i]).save(tmp_path / "images" / f"{i:05d}.png")
    explained, skipped, layer = explain_paths(run, [tmp_path / "images"], tmp_path / "out")
    assert not skipped and layer == "features.3" and len(list((tmp_path / "out").glob("*.png"))) == 8
    for row in explained:
        evaluation = rows[int(Path(row["path"]).stem)]
        assert row["predicted"] == evaluation[2] and abs(row["confidence"] - float(evaluation[3])) <= 1e-4
