"""MIL interpreter ops of vitdeploy/runtimes/mil/ops/classify.py."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ct = pytest.importorskip("coremltools")

from vitdeploy.runtimes.mil import MILInterpreter  # noqa: E402


@pytest.mark.parametrize("labels", [["cat", "dog", "eel"], [10, 20, 30]])
def test_classifier_outputs_label_and_probabilities(tmp_path, labels):
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3), torch.nn.Softmax(-1)).eval()
    x = torch.randn(1, 3, 2, 2)
    with mock.patch("gc.collect", return_value=0):
        mlmodel = ct.convert(
            torch.export.export(module, (x,)).run_decompositions({}),
            inputs=[ct.TensorType(name="x", shape=x.shape)],
            convert_to="mlprogram",
            minimum_deployment_target=ct.target.iOS17,
            compute_precision=ct.precision.FLOAT32,
            classifier_config=ct.ClassifierConfig(labels),
        )
    mlmodel.save(str(tmp_path / "classifier.mlpackage"))
    interp = MILInterpreter.load(tmp_path / "classifier.mlpackage")
    assert "classify" in interp.op_counts()
    out = interp.predict({"x": x.numpy()})
    probs = module(x).detach().numpy()[0]
    assert out["classLabel"].item() == labels[int(np.argmax(probs))]
    assert out["classLabel_probs"] == pytest.approx(dict(zip(labels, probs.tolist())), rel=1e-5)
