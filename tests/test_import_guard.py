"""The line-side runtime must import without torch, ultralytics, gradio, albumentations or the
Jetson GPIO library: a Jetson or an industrial PC runs it without them (DESIGN.md)."""

import subprocess
import sys
import textwrap
from pathlib import Path

BLOCKED = ["torch", "torchvision", "ultralytics", "gradio", "albumentations", "Jetson", "Jetson.GPIO",
           "defectgate_training"]


def test_every_runtime_module_imports_with_heavy_libraries_blocked():
    code = textwrap.dedent(f"""
        import sys, pkgutil, importlib
        for name in {BLOCKED!r}:
            sys.modules[name] = None  # any import of these now raises ImportError
        import defectgate
        names = [m.name for m in pkgutil.walk_packages(defectgate.__path__, "defectgate.")]
        for name in names:
            importlib.import_module(name)
        leaked = sorted(n for n in sys.modules if n.split(".")[0] in {{"torch", "ultralytics", "gradio", "albumentations"}}
                        and sys.modules[n] is not None)
        assert not leaked, leaked
        print(len(names))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert int(out.stdout.strip()) >= 15  # the walk really found the runtime's modules


def test_pipeline_imports_in_a_plain_interpreter_without_torch():
    out = subprocess.run([sys.executable, "-c", "import sys; sys.modules['torch'] = None; import defectgate.pipeline"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_no_shadowing_packages_in_source_roots():
    root = Path(__file__).resolve().parents[1]
    assert not (root / "inspect" / "__init__.py").exists()
    assert not (root / "datasets" / "__init__.py").exists()
