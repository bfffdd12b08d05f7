"""The gradio UI: four tabs (Review queue, Label images, Export, Quality) wired to QAService.
Handlers never raise into gradio: a DefectgateError becomes a line in the tab's status box, so a
reviewer sees what to do instead of a generic 'Error' toast."""

from __future__ import annotations

import functools
import os
from typing import Any, Callable

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no phoning home

import gradio as gr  # noqa: E402
from gradio_image_annotation import image_annotator  # noqa: E402

from defectgate.errors import DefectgateError  # noqa: E402

from . import charts  # noqa: E402
from .archive_reader import Filters  # noqa: E402
from .boxes import annotator_value_boxes, class_colors  # noqa: E402
from .decisions import Decision  # noqa: E402
from .service import REVIEW_STATUSES, QAService  # noqa: E402

ANY = "(any)"
QUEUE_COLUMNS = ["row", "time", "line", "classes", "conf", "review"]
# the queues a reviewer can work through: every part, only where live model and shadow candidate disagree,
# or the rejects the line's confirm sensor did not see leave the belt
QUEUE_CHOICES = {"All parts": "all", "Disagreements (live vs candidate)": "disagreements",
                 "Unconfirmed rejects (line)": "unconfirmed"}

# Keyboard: 1-4 decide, n/p next/previous, s suggest. Ignored while typing in a text field; the
# annotator itself uses c, d, e, space and Delete (and stops those keys), so none of these clash.
KEYS_JS = """
<script>
document.addEventListener('keydown', (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const t = e.target;
  if (t && t.closest && t.closest('input, textarea, select, [contenteditable="true"]')) return;
  const map = {'1': 'qa-confirm-defect', '2': 'qa-false-reject', '3': 'qa-missed-defect',
               '4': 'qa-correct-pass', 'n': 'qa-next', 'p': 'qa-prev', 's': 'qa-suggest'};
  const el = document.getElementById(map[e.key.toLowerCase()]);
  if (el && el.offsetParent !== null) { e.preventDefault(); el.click(); }
});
</script>
"""

BUTTON_IDS = {
    Decision.CONFIRM_DEFECT: "qa-confirm-defect", Decision.FALSE_REJECT: "qa-false-reject",
    Decision.MISSED_DEFECT: "qa-missed-defect", Decision.CORRECT_PASS: "qa-correct-pass",
}
BUTTON_KEYS = {Decision.CONFIRM_DEFECT: "1", Decision.FALSE_REJECT: "2", Decision.MISSED_DEFECT: "3",
               Decision.CORRECT_PASS: "4"}


def _err(exc: Exception) -> str:
    return f"**Error:** {exc}"


def _who(reviewer: str, request: gr.Request | None) -> str:
    """The logged-in user when there is a login, else the name typed in the Reviewer box."""
    user = getattr(request, "username", None) if request is not None else None
    return user or (reviewer or "")


def build_ui(svc: QAService, reviewer_default: str = "", login: bool = False) -> gr.Blocks:
    classes = svc.classes
    colors = class_colors(classes)
    # import pyplot now, on this thread: gradio switches the matplotlib backend around every event,
    # and two first events importing pyplot at once on worker threads break its import
    charts.load_pyplot()

    def annotator(elem_id: str, label: str) -> image_annotator:
        return image_annotator(
            label=label, label_list=list(classes), label_colors=list(colors), sources=None, elem_id=elem_id,
            show_clear_button=False, show_download_button=False, show_share_button=False,
            show_remove_button=True, use_default_label=True, box_min_size=4, height=420)

    # ---------------------------------------------------------------- review queue handlers
    def table(ids: list[int]) -> list[list[Any]]:
        reviews = svc.store.latest()
        parts = svc.archive.get_many(ids)
        rows = []
        for rid in ids:
            p = parts[rid]
            r = reviews.get(rid)
            line = f"{p.verdict}≠{p.shadow.verdict}" if p.disagrees else p.verdict  # type: ignore[union-attr]
            rows.append([p.id, p.ts_utc[11:19], line, ", ".join(p.classes),
                         round(p.max_confidence, 2), r.decision.label if r else ""])
        return rows

    def show(ids: list[int], pos: int) -> tuple[Any, str]:
        if not ids:
            return None, svc.archive.empty_message() or "The queue is empty for these filters."
        pos = max(0, min(pos, len(ids) - 1))
        try:
            view = svc.item(ids[pos])
        except DefectgateError as exc:  # one unreadable image must not block the whole queue
            return None, f"item {pos + 1} of {len(ids)} (row {ids[pos]}): {_err(exc)}; press Next"
        return ({"image": view.image_rgb, "boxes": view.boxes},
                f"item {pos + 1} of {len(ids)}  \n" + view.info_markdown())

    def load_queue(queue, verdict, status, cls, model_version, since, until, min_conf, max_conf):
        try:
            f = Filters(queue=QUEUE_CHOICES.get(queue, queue), verdict=verdict, since=since or "", until=until or "",
                        cls="" if cls == ANY else cls,
                        model_version="" if model_version == ANY else model_version,
                        min_conf=float(min_conf or 0), max_conf=float(max_conf if max_conf is not None else 1))
            rows, _ = svc.queue(f, status)
            ids = [p.id for p in rows]
            image, info = show(ids, 0)
            note = svc.archive.empty_message() or f"{len(ids)} parts in the queue"
            return table(ids), ids, 0, image, info, note
        except DefectgateError as exc:
            return [], [], 0, None, "", _err(exc)

    def goto(ids, pos, step):
        try:
            pos = max(0, min(int(pos) + step, len(ids) - 1)) if ids else 0
            image, info = show(ids, pos)
            return pos, image, info, ""
        except DefectgateError as exc:
            return pos, gr.skip(), gr.skip(), _err(exc)

    def select_row(ids, evt: gr.SelectData):
        return goto(ids, evt.index[0], 0)

    def decide(decision: Decision, value, ids, pos, reviewer, request: gr.Request):
        if not ids:
            return gr.skip(), pos, gr.skip(), gr.skip(), "Nothing selected: the queue is empty."
        try:
            rid = ids[int(pos)]
            review = svc.decide(rid, decision, annotator_value_boxes(value), _who(reviewer, request))
            new_pos = min(int(pos) + 1, len(ids) - 1)
            image, info = show(ids, new_pos)
            msg = (f"Saved: row {rid} **{decision.label}** by {review.reviewer} "
                   f"({len(review.boxes)} boxes) at {review.ts_utc}")
            return table(ids), new_pos, image, info, msg
        except DefectgateError as exc:
            return gr.skip(), pos, gr.skip(), gr.skip(), _err(exc)

    def suggest(value, ids, pos):
        if not ids:
            return gr.skip(), "Nothing selected: the queue is empty."
        try:
            boxes = svc.suggest_for_part(ids[int(pos)])
            image = svc.item(ids[int(pos)]).image_rgb
            conf = svc.cfg.suggest_conf
            at = "the line's thresholds" if conf is None else f"confidence >= {conf}"
            return {"image": image, "boxes": boxes}, f"{len(boxes)} model suggestions at {at}; edit them, then decide"
        except DefectgateError as exc:
            return gr.skip(), _err(exc)

    # ---------------------------------------------------------------- labeling handlers
    def open_folder(folder):
        try:
            names = svc.folder_images(folder)
            image, boxes, msg = svc.label_view(names[0])
            return (gr.update(choices=names, value=names[0]), {"image": image, "boxes": boxes},
                    f"{len(names)} images. " + msg, names)
        except DefectgateError as exc:
            return gr.update(choices=[], value=None), None, _err(exc), []

    def open_image(name):
        if not name:
            return gr.skip(), ""
        try:
            image, boxes, msg = svc.label_view(name)
            return {"image": image, "boxes": boxes}, msg
        except DefectgateError as exc:
            return gr.skip(), _err(exc)

    def prelabel(name):
        try:
            image, boxes = svc.suggest_for_image(name or "")
            return {"image": image, "boxes": boxes}, f"{len(boxes)} model suggestions; edit, then save"
        except DefectgateError as exc:
            return gr.skip(), _err(exc)

    def save_labels(name, value, reviewer, request: gr.Request):
        try:
            boxes = annotator_value_boxes(value)
            path = svc.save_labels(name or "", boxes, _who(reviewer, request))
            return f"Saved {len(boxes)} boxes to {path}"
        except DefectgateError as exc:
            return _err(exc)

    def next_image(name, choices_state):
        names = choices_state or []
        if name in names and names.index(name) + 1 < len(names):
            return names[names.index(name) + 1]
        return gr.skip()

    # ---------------------------------------------------------------- export and quality
    def do_export(reviewer, request: gr.Request):
        try:
            res = svc.export(_who(reviewer, request) or "unknown")
            files = [[i["image"], i["label"], i["decision"], i["boxes"], i["reviewer"]] for i in res.manifest["items"]]
            return f"**Exported** {res.summary()}", files
        except DefectgateError as exc:
            return _err(exc), []

    def quality():
        try:
            rep = svc.quality()
            day, shift, reasons, conf = svc.quality_charts(rep)
            return rep.summary_rows(), day, shift, reasons, conf, ""
        except DefectgateError as exc:
            return [], None, None, None, None, _err(exc)

    # ---------------------------------------------------------------- layout
    with gr.Blocks(analytics_enabled=False, title="defectgate QA", delete_cache=(900, 3600)) as demo:
        model = f"model `{svc.prelabeler.version}`" if svc.prelabeler else "no model bundle (no suggestions)"
        with gr.Row(equal_height=True):
            gr.Markdown(f"### defectgate QA\narchive `{svc.archive.root}` · {model} · classes: {', '.join(classes)}  \n"
                        "keys: **1** confirm defect · **2** false reject · **3** missed defect · **4** correct pass · "
                        "**n**/**p** next/previous · **s** model suggestions", scale=4)
            reviewer = gr.Textbox(label="Reviewer", value=reviewer_default, visible=not login, elem_id="qa-reviewer",
                                  max_lines=1, scale=1, min_width=160)
        ids_state = gr.State([])
        pos_state = gr.State(0)
        with gr.Tabs():
            with gr.Tab("Review queue", id="review", elem_id="tab-review"):
                with gr.Row(equal_height=True):
                    w = {"min_width": 110, "scale": 1}
                    f_queue = gr.Dropdown(list(QUEUE_CHOICES), value=next(iter(QUEUE_CHOICES)), label="Queue",
                                          elem_id="f-queue", **w)
                    f_verdict = gr.Dropdown(["NG", "OK", "all"], value="NG", label="Line verdict", elem_id="f-verdict", **w)
                    f_status = gr.Dropdown(list(REVIEW_STATUSES), value="unreviewed", label="Review status",
                                           elem_id="f-status", **w)
                    f_class = gr.Dropdown([ANY, *classes], value=ANY, label="Class", **w)
                    f_model = gr.Dropdown([ANY, *svc.archive.model_versions()], value=ANY, label="Model version", **w)
                    f_since = gr.Textbox(label="From (UTC)", placeholder="2026-11-24", max_lines=1, **w)
                    f_until = gr.Textbox(label="To (UTC)", placeholder="2026-11-24T18:00", max_lines=1, **w)
                    f_min = gr.Number(value=0.0, minimum=0, maximum=1, step=0.05, label="Min conf.", **w)
                    f_max = gr.Number(value=1.0, minimum=0, maximum=1, step=0.05, label="Max conf.", **w)
                    apply = gr.Button("Apply filters", elem_id="qa-apply", **w)
                with gr.Row():
                    with gr.Column(scale=4, min_width=420):
                        queue_note = gr.Markdown(elem_id="qa-queue-note")
                        queue_df = gr.Dataframe(headers=QUEUE_COLUMNS, interactive=False, elem_id="qa-queue",
                                                max_height=520, wrap=False, show_search="none",
                                                column_widths=[48, 84, 44, 130, 56, 130])
                    with gr.Column(scale=5):
                        review_ann = annotator("qa-review-annotator", "Part image: drag to move a box, "
                                                                      "C = draw, D = drag, Delete = remove")
                        item_info = gr.Markdown(elem_id="qa-item-info")
                        with gr.Row():
                            decision_buttons = {
                                d: gr.Button(f"{d.label} [{BUTTON_KEYS[d]}]", elem_id=BUTTON_IDS[d],
                                             variant="stop" if d.reviewer_ng else "primary")
                                for d in Decision}
                        with gr.Row():
                            prev_btn = gr.Button("◀ Previous [p]", elem_id="qa-prev")
                            next_btn = gr.Button("Next ▶ [n]", elem_id="qa-next")
                            suggest_btn = gr.Button("Model suggestions [s]", elem_id="qa-suggest")
                        review_status = gr.Markdown(elem_id="qa-review-status")
            with gr.Tab("Label images", id="label", elem_id="tab-label"):
                folders = ", ".join(str(r) for r in svc.folders.roots) or "none (start with --label-dir DIR)"
                gr.Markdown(f"Label images from a folder under: `{folders}`. Labels are written as YOLO "
                            "files (images/ → labels/, or a .txt beside the image).")
                with gr.Row():
                    folder = gr.Textbox(label="Folder (relative to the label folder)", value=".", max_lines=1,
                                        elem_id="qa-folder")
                    open_btn = gr.Button("Open folder", elem_id="qa-open-folder")
                image_dd = gr.Dropdown([], label="Image", elem_id="qa-image-select")
                label_ann = annotator("qa-label-annotator", "Image: drag to move a box, C = draw, Delete = remove")
                with gr.Row():
                    prelabel_btn = gr.Button("Model pre-labels", elem_id="qa-prelabel")
                    save_btn = gr.Button("Save labels", variant="primary", elem_id="qa-save-labels")
                    next_img_btn = gr.Button("Next image ▶", elem_id="qa-next-image")
                label_status = gr.Markdown(elem_id="qa-label-status")
            with gr.Tab("Export", id="export", elem_id="tab-export"):
                gr.Markdown(f"Reviewed parts and saved labels become the next dataset increment in `{svc.exports}` "
                            "(YOLO images/labels, data.yaml, manifest.json), deduplicated by image hash. "
                            "Add it to training with `defectgate data merge`.")
                export_btn = gr.Button("Export dataset increment", variant="primary", elem_id="qa-export")
                export_status = gr.Markdown(elem_id="qa-export-status")
                export_files = gr.Dataframe(headers=["image", "label", "decision", "boxes", "reviewer"],
                                            interactive=False, elem_id="qa-export-files", max_height=400)
            with gr.Tab("Quality", id="quality", elem_id="tab-quality"):
                refresh = gr.Button("Refresh", elem_id="qa-refresh")
                chart = {"show_label": False, "buttons": ["download", "fullscreen"], "format": "png"}
                quality_status = gr.Markdown()
                with gr.Row():
                    summary = gr.Dataframe(headers=["measure", "value"], interactive=False, elem_id="qa-summary")
                    confusion_img = gr.Image(label="Model vs reviewer", interactive=False, elem_id="qa-chart-confusion",
                                             **chart)
                with gr.Row():
                    day_img = gr.Image(label="Per day", interactive=False, elem_id="qa-chart-day", **chart)
                    shift_img = gr.Image(label="Per shift", interactive=False, elem_id="qa-chart-shift", **chart)
                    reasons_img = gr.Image(label="Reject reasons", interactive=False, elem_id="qa-chart-reasons", **chart)

        # ---------------------------------------------------------------- events
        filters = [f_queue, f_verdict, f_status, f_class, f_model, f_since, f_until, f_min, f_max]
        queue_out = [queue_df, ids_state, pos_state, review_ann, item_info, queue_note]
        # a disagreement goes either way (line NG, candidate OK or the reverse): show both once the queue is chosen
        f_queue.input(lambda q: "all" if QUEUE_CHOICES.get(q) == "disagreements" else gr.skip(), [f_queue], [f_verdict])
        demo.load(load_queue, filters, queue_out)
        apply.click(load_queue, filters, queue_out)
        queue_df.select(select_row, [ids_state], [pos_state, review_ann, item_info, review_status])
        prev_btn.click(functools.partial(goto, step=-1), [ids_state, pos_state],
                       [pos_state, review_ann, item_info, review_status])
        next_btn.click(functools.partial(goto, step=1), [ids_state, pos_state],
                       [pos_state, review_ann, item_info, review_status])
        for d, btn in decision_buttons.items():
            btn.click(_bind(decide, d), [review_ann, ids_state, pos_state, reviewer],
                      [queue_df, pos_state, review_ann, item_info, review_status])
        suggest_btn.click(suggest, [review_ann, ids_state, pos_state], [review_ann, review_status])

        choices = gr.State([])
        open_btn.click(open_folder, [folder], [image_dd, label_ann, label_status, choices])
        image_dd.input(open_image, [image_dd], [label_ann, label_status])
        prelabel_btn.click(prelabel, [image_dd], [label_ann, label_status])
        save_btn.click(save_labels, [image_dd, label_ann, reviewer], [label_status])
        next_img_btn.click(next_image, [image_dd, choices], [image_dd]).then(
            open_image, [image_dd], [label_ann, label_status])

        export_btn.click(do_export, [reviewer], [export_status, export_files])
        quality_out = [summary, day_img, shift_img, reasons_img, confusion_img, quality_status]
        refresh.click(quality, None, quality_out)
        demo.load(quality, None, quality_out)
    return demo


def _bind(fn: Callable, decision: Decision) -> Callable:
    """A handler with the decision fixed. gradio reads the signature to inject gr.Request, so
    this keeps the remaining parameters visible (functools.partial would too, but explicitly)."""
    def handler(value, ids, pos, reviewer, request: gr.Request):
        return fn(decision, value, ids, pos, reviewer, request)
    handler.__name__ = f"decide_{decision.value}"
    return handler
