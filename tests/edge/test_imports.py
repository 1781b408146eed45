"""Every module of every product package imports without TensorRT, pycuda, cuda-python, TensorFlow or the
plant libraries (paho-mqtt, psycopg, tritonclient).

The optional libraries are imported lazily, inside the functions that need them: the Jetson runtime
installs none of TensorFlow, and a machine without a GPU has none of TensorRT / pycuda / cuda-python.
Walking every submodule (not just the packages' ``__init__``) catches a broken or eagerly importing
submodule.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("edge", "convert", "calibrate", "bench", "train", "collect")

CODE = """
import importlib, pkgutil, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('tensorrt', 'pycuda', 'cuda', 'tensorflow', 'keras', 'tf2onnx', 'paho', 'psycopg',
                                  'tritonclient'):
            raise ImportError('blocked ' + name)
sys.meta_path.insert(0, Block())
names, bad = [], []
for pkg in %r:
    mod = importlib.import_module(pkg)
    names.append(pkg)
    for info in pkgutil.walk_packages(mod.__path__, pkg + '.'):
        names.append(info.name)
        try:
            importlib.import_module(info.name)
        except Exception as e:  # report every failing module, not only the first
            bad.append(info.name + ': ' + repr(e))
print(' '.join(names))
print('\\n'.join(bad))
"""


def _modules_on_disk():
    names = set()
    for pkg in PACKAGES:
        for p in (ROOT / pkg).rglob("*.py"):
            parts = p.relative_to(ROOT).with_suffix("").parts
            names.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_every_module_imports_without_optional_libs():
    r = subprocess.run([sys.executable, "-c", CODE % (PACKAGES,)], capture_output=True, text=True, timeout=300,
                       cwd=ROOT)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    failures = [ln for ln in lines[1:] if ln.strip()]
    assert not failures, "\n".join(failures)
    # the walk reached every module on disk (not only the packages' __init__ files)
    assert set(lines[0].split()) == _modules_on_disk()
