"""Pre-labels are what the station would reject for: the bundle's per-class thresholds through the
runtime's Detector; a reviewer's lower confidence lowers every class threshold to it, never raises one."""

from __future__ import annotations

import numpy as np

from defectgate.bundle import read_sidecar, write_sidecar
from defectgate.synthparts import render_scene
from defectgate_training.qa.prelabel import Prelabeler

from qa_fixtures import CLASS_NAMES, CONST_CLASS, make_bundle


def test_prelabels_use_the_bundles_per_class_thresholds(tmp_path):
    root = make_bundle(tmp_path / "b")  # one 'dent' at 0.9, every other anchor 0.01
    image = render_scene(7, (96, 128)).image
    dent = CLASS_NAMES[CONST_CLASS]

    def labeler(class_thresholds):
        side = read_sidecar(root / "model.json")
        write_sidecar(root, side.model_copy(update={"class_thresholds": class_thresholds}))
        return Prelabeler(root)

    p = labeler({})  # the bundle's conf_threshold, 0.25, for every class
    assert [r["class"] for r in p.predict(image)] == [dent]
    p.close()
    p = labeler({dent: 0.95})  # calibrated above what the model says: the station passes this part
    assert p.predict(image) == []
    assert [r["class"] for r in p.predict(image, conf=0.5)] == [dent], "a lower reviewer threshold applies"
    p.close()
    p = labeler({c: 0.005 for c in CLASS_NAMES if c != dent} | {dent: 0.95})
    found = p.predict(image, conf=0.5)
    assert len(found) > 1 and {r["class"] for r in found} > {dent}, "conf never raises a lower class threshold"
    assert np.all([r["confidence"] >= 0.005 for r in found])
    p.close()
