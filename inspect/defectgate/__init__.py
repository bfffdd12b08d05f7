"""defectgate line-side runtime: camera frames in, OK/NG verdicts and timed rejects out.

This package must never import torch, ultralytics, gradio or albumentations (a Jetson runs it
without them); tests/test_import_guard.py proves it.
"""

__version__ = "0.1.0"
