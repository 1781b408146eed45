"""Every package imports without TensorRT, pycuda or cuda-python (lazy optional imports)."""

import subprocess
import sys


def test_packages_import_without_optional_gpu_libs():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('tensorrt', 'pycuda', 'cuda', 'tensorflow', 'keras'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import pkgutil, importlib\n"
        "import edge, edge.runtime, edge.data, edge.preprocess, edge.metadata\n"
        "for pkg in ('edge', 'convert', 'calibrate', 'bench', 'train'):\n"
        "    importlib.import_module(pkg)\n"
        "import edge.runtime.tensorrt\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"
