"""The QA review and labeling app (`defectgate qa`, extra `[qa]`): review what the line rejected
(and a sample of what it passed), correct verdicts and boxes, label new images with model
pre-labels, export a versioned YOLO dataset increment, and watch quality charts.

Only `ui.py` and `app.py` import gradio; everything else (archive reading, the review store,
export, statistics, charts) is plain Python and is unit-tested without a browser."""
