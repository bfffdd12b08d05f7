"""Datasets for defectgate: the synthetic default set, importers (Pascal VOC, COCO, YOLO),
validation, stratified splitting, statistics and merging of QA increments.

Every dataset these tools write is an ultralytics YOLO dataset:
`images/<split>/*`, `labels/<split>/*.txt` (`class cx cy w h`, normalised; an empty file is an OK
part), `data.yaml` with an absolute `path:` and `manifest.json` saying where it came from. Each is
built in a temporary sibling folder and renamed into place, so a failure leaves nothing behind.
"""
