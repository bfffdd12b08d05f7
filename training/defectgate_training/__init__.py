"""defectgate off-line tools: datasets, augmentation, training, evaluation, export, registry, QA app.
Needs the [train] extra (ultralytics, torch, albumentations); the QA app needs [qa]."""

__version__ = "0.1.0"
