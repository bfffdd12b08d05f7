"""A probe transform that records what the albumentations pipeline hands over inside ultralytics
training. A module of its own name, not conftest: several test folders have a conftest."""

from __future__ import annotations

import numpy as np
import pytest


def _albumentations():
    return pytest.importorskip("albumentations", reason="needs the [train] extra")


class BoxProbe:
    """Records what the albumentations pipeline hands to its last transform inside ultralytics."""

    calls: list[dict] = []


def make_probe():
    A = _albumentations()

    class TrainingBoxProbe(A.DualTransform):
        """Identity transform that records image shape and boxes (albumentations' normalised xyxy)."""

        def apply(self, img, **params):
            BoxProbe.calls.append({"shape": img.shape, "boxes": None})
            return img

        def apply_to_bboxes(self, bboxes, **params):
            if BoxProbe.calls:
                BoxProbe.calls[-1]["boxes"] = np.array(bboxes, copy=True)
            return bboxes

        def apply_to_keypoints(self, keypoints, **params):  # ultralytics passes segment points too
            return keypoints

        def get_transform_init_args_names(self):
            return ()

    return TrainingBoxProbe(p=1.0)
