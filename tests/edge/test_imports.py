"""Every module of every product package imports without TensorRT, pycuda, cuda-python or TensorFlow.

The optional libraries are imported lazily, inside the functions that need them: the Jetson runtime
installs none of TensorFlow, and a machine without a GPU has none of TensorRT / pycuda / cuda-python.
Walking every submodule (not just the packages' ``__init__``) catches a broken or eagerly importing
submodule.
"""

import subprocess
import sys

PACKAGES = ("edge", "convert", "calibrate", "bench", "train")

CODE = """
import importlib, pkgutil, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('tensorrt', 'pycuda', 'cuda', 'tensorflow', 'keras', 'tf2onnx'):
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
print(len(names))
print('\\n'.join(bad))
"""


def test_every_module_imports_without_optional_libs():
    r = subprocess.run([sys.executable, "-c", CODE % (PACKAGES,)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    failures = [ln for ln in lines[1:] if ln.strip()]
    assert not failures, "\n".join(failures)
    # the walk reached the submodules (a package list of only __init__ files would be 5)
    assert int(lines[0]) > 30, lines[0]
