#!/usr/bin/env bash
# steel-edge on a Jetson: check JetPack → TensorRT, install GStreamer/OpenCV from apt, install the
# package with the [trt] extra into a venv that sees JetPack's TensorRT python bindings.
#
# Usage: sudo -v && ./jetson/setup.sh [--venv /opt/steel-edge/venv] [--no-apt]
set -euo pipefail

VENV=/opt/steel-edge/venv
APT=1
while [ $# -gt 0 ]; do
  case "$1" in
    --venv) VENV="$2"; shift 2 ;;
    --no-apt) APT=0; shift ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
REPO="$(cd "$(dirname "$0")/.." && pwd)"

die() { echo "setup.sh: error: $*" >&2; exit 2; }

# --- 1. JetPack / L4T release ------------------------------------------------------------
[ "$(uname -m)" = "aarch64" ] || die "this is not a Jetson (uname -m = $(uname -m)); use pip install '.[trt]' on x86"
L4T=""
if [ -r /etc/nv_tegra_release ]; then
  # "# R35 (release), REVISION: 4.1, ..." → 35.4.1
  L4T="$(sed -n 's/^# R\([0-9]*\) (release), REVISION: \([0-9.]*\).*/\1.\2/p' /etc/nv_tegra_release)"
fi
[ -n "$L4T" ] || L4T="$(dpkg-query -W -f='${Version}' nvidia-l4t-core 2>/dev/null | cut -d- -f1 || true)"
[ -n "$L4T" ] || die "cannot read the L4T release (/etc/nv_tegra_release, nvidia-l4t-core): is JetPack installed?"

# L4T → JetPack → the TensorRT it ships (the engine must be built by the same TensorRT)
# and the pip constraints of that JetPack (numpy ABI of the system OpenCV, cuda-python = its CUDA)
case "$L4T" in
  35.1*)            JP="5.0.2"; TRT_EXPECT="8.4"; CONSTRAINTS="" ;;
  35.2*|35.3*)      JP="5.1/5.1.1"; TRT_EXPECT="8.5"; CONSTRAINTS=constraints-jp5.txt ;;
  35.4*|35.5*|35.6*) JP="5.1.2+"; TRT_EXPECT="8.5"; CONSTRAINTS=constraints-jp5.txt ;;
  36.2*|36.3*)      JP="6.0"; TRT_EXPECT="8.6"; CONSTRAINTS=constraints-jp6.0.txt ;;
  36.4*)            JP="6.1/6.2"; TRT_EXPECT="10.3"; CONSTRAINTS=constraints-jp6.1.txt ;;
  38.*)             JP="7.x"; TRT_EXPECT="10"; CONSTRAINTS=constraints-jp7.txt ;;
  *)                JP="unknown"; TRT_EXPECT=""; CONSTRAINTS="" ;;
esac
echo "setup.sh: L4T $L4T → JetPack $JP (expects TensorRT ${TRT_EXPECT:-?}, pip constraints ${CONSTRAINTS:-none})"
[ -n "$CONSTRAINTS" ] || die "no constraints for L4T $L4T (JetPack $JP): supported are JetPack 5.1.x, 6.0, 6.1/6.2, 7.x"

TRT_VER="$(python3 -c 'import tensorrt as t; print(t.__version__)' 2>/dev/null || true)"
[ -n "$TRT_VER" ] || TRT_VER="$(dpkg-query -W -f='${Version}' python3-libnvinfer 2>/dev/null | cut -d- -f1 || true)"
if [ -z "$TRT_VER" ]; then
  [ "$APT" = 1 ] && { echo "setup.sh: TensorRT python bindings missing: installing nvidia-tensorrt (JetPack)"; sudo apt-get install -y nvidia-tensorrt python3-libnvinfer; }
  TRT_VER="$(python3 -c 'import tensorrt as t; print(t.__version__)' 2>/dev/null || true)"
fi
[ -n "$TRT_VER" ] || die "TensorRT is not installed (sudo apt-get install nvidia-jetpack)"
case "$TRT_VER" in
  8.[0-4].*) die "TensorRT $TRT_VER is older than 8.5: the runtime needs JetPack 5.1 or newer" ;;
esac
if [ -n "$TRT_EXPECT" ] && [ "${TRT_VER#"$TRT_EXPECT"}" = "$TRT_VER" ]; then
  echo "setup.sh: warning: TensorRT $TRT_VER is not the $TRT_EXPECT of JetPack $JP (mixed install?)" >&2
fi
echo "setup.sh: TensorRT $TRT_VER"

# --- 2. apt: GStreamer (CSI/RTSP capture), OpenCV with GStreamer, build deps of pycuda ----
if [ "$APT" = 1 ]; then
  sudo apt-get update
  sudo apt-get install -y --no-install-recommends \
    python3-venv python3-dev python3-pip \
    gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
    gstreamer1.0-libav libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev \
    python3-opencv v4l-utils
  # CUDA headers for pycuda's build (JetPack's cuda toolkit)
  dpkg -s cuda-toolkit-* >/dev/null 2>&1 || sudo apt-get install -y nvidia-cuda-dev || true
fi

# --- 3. venv that sees JetPack's tensorrt + the system OpenCV (built with GStreamer) -------
python3 -m venv --system-site-packages "$VENV"
"$VENV/bin/pip" install --upgrade pip wheel
export PATH="/usr/local/cuda/bin:$PATH" CUDA_ROOT=/usr/local/cuda
# The pip "tensorrt" of [trt] is x86-only by its marker; on Jetson the apt bindings are used.
# No TensorFlow here: engines are built from the ONNX artifacts (edge-convert --from-onnx).
"$VENV/bin/pip" install -c "$REPO/jetson/$CONSTRAINTS" "$REPO[trt]"
# pip's opencv-python-headless has no GStreamer: prefer the system cv2 (python3-opencv) for csi:// and gst://
if python3 -c 'import cv2,sys; sys.exit("GStreamer:                   YES" not in cv2.getBuildInformation())' 2>/dev/null; then
  "$VENV/bin/pip" uninstall -y opencv-python-headless || true
  # The system cv2 is built against numpy 1.x: the constraints keep the venv's numpy there.
  "$VENV/bin/python" -c 'import cv2, numpy; print("setup.sh: system OpenCV", cv2.__version__, "with numpy", numpy.__version__)' \
    || die "the system OpenCV does not import with the venv's numpy (numpy ABI): check $CONSTRAINTS"
fi

# --- 4. check ---------------------------------------------------------------------------
"$VENV/bin/python" - <<'PY'
import tensorrt, cv2
from edge.cuda import get_backend
from edge.runtime.tensorrt.compat import missing_runtime_api, runtime_branch, version_of
be = get_backend("auto")
d = be.device_info()
print(f"setup.sh: TensorRT {tensorrt.__version__} (branch {runtime_branch(version_of(tensorrt))}), "
      f"GPU {d.name} sm {d.compute_capability} integrated={d.integrated}, CUDA backend {be.name}")
missing = missing_runtime_api(tensorrt)
assert not missing, f"TensorRT lacks {missing}"
print("setup.sh: OpenCV", cv2.__version__, "GStreamer", "YES" if "GStreamer:                   YES" in cv2.getBuildInformation() else "NO")
PY
"$VENV/bin/edge-doctor" --quick || echo "setup.sh: warning: edge-doctor --quick reported a failure (see above)" >&2
echo "setup.sh: done. Prove the chain: $VENV/bin/edge-doctor --md doctor.md. Service: sudo cp jetson/edge-capture.service /etc/systemd/system/ && sudo systemctl enable --now edge-capture"
