#!/usr/bin/env bash
# defectgate on a fresh NVIDIA Jetson (Orin Nano / Orin NX / AGX Orin) with JetPack 6 (L4T r36).
#
#   sudo deploy/jetson/setup.sh [--user defectgate] [--prefix /opt/defectgate] [--power MODE] [--no-service]
#
# What it does, in order (re-running it is safe):
#   1. checks this is JetPack 6 and that the system TensorRT is importable from python3
#   2. apt packages: python venv/dev, GStreamer + plugins (CSI, USB, GigE via aravis), libgpiod
#   3. a service user in the gpio and video groups, /etc/defectgate, /var/lib/defectgate
#   4. the GPIO udev rule (deploy/jetson/99-defectgate-gpio.rules)
#   5. a venv with --system-site-packages (it sees JetPack's TensorRT and GStreamer-enabled OpenCV),
#      then pip install '.[jetson,station]' and cuda-python matching JetPack's CUDA 12
#   6. the systemd unit (not started: put a config and a bundle in place first)
set -euo pipefail

SERVICE_USER=defectgate
PREFIX=/opt/defectgate
POWER_MODE=""
INSTALL_SERVICE=1
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

usage() {
  # the comment block at the top of this file, without the leading "# "
  awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"
}

while [ $# -gt 0 ]; do
  case "$1" in
    --user) SERVICE_USER="$2"; shift 2 ;;
    --prefix) PREFIX="$2"; shift 2 ;;
    --power) POWER_MODE="$2"; shift 2 ;;
    --no-service) INSTALL_SERVICE=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "setup.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'setup.sh: error: %s\n' "$*" >&2; exit 2; }

[ "$(id -u)" -eq 0 ] || die "run as root (sudo $0), it installs packages, a user and a systemd unit"

say "1/6 checking the board"
[ -r /etc/nv_tegra_release ] || die "/etc/nv_tegra_release not found: this is not a Jetson with L4T; see docs/jetson.md"
release="$(head -n 1 /etc/nv_tegra_release)"
case "$release" in
  *"R36"*) echo "L4T: $release" ;;
  *) die "JetPack 6 (L4T R36) expected, found: $release; flash JetPack 6 or adapt the package names" ;;
esac
if [ -r /proc/device-tree/model ]; then
  echo "model: $(tr -d '\0' </proc/device-tree/model)"
fi
python3 -c 'import tensorrt' 2>/dev/null \
  || die "system TensorRT is not importable from python3: sudo apt-get install nvidia-jetpack (or python3-libnvinfer)"

say "2/6 apt packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  python3-venv python3-dev python3-pip \
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
  gstreamer1.0-libav v4l-utils gpiod \
  >/dev/null || die "apt-get install failed (see above)"
# GigE Vision / USB3 Vision cameras (optional): aravis tools and library from Ubuntu universe
apt-get install -y -qq --no-install-recommends aravis-tools libaravis-0.8-0 gir1.2-aravis-0.8 >/dev/null \
  || echo "warning: aravis packages not installed (universe disabled?); GigE cameras need them" >&2
if ! gst-inspect-1.0 aravissrc >/dev/null 2>&1; then
  echo "note: GStreamer element 'aravissrc' not found; GigE through gst:// needs aravis built with its" \
       "GStreamer plugin (docs/jetson.md, Cameras). CSI and USB cameras do not need it."
fi

say "3/6 service user '$SERVICE_USER', groups gpio and video"
groupadd -f -r gpio
if ! id "$SERVICE_USER" >/dev/null 2>&1; then
  useradd --system --home-dir /var/lib/defectgate --shell /usr/sbin/nologin "$SERVICE_USER"
fi
usermod -a -G gpio,video "$SERVICE_USER"
install -d -o "$SERVICE_USER" -g "$SERVICE_USER" -m 0750 /var/lib/defectgate
install -d -m 0755 /etc/defectgate

say "4/6 GPIO udev rule"
install -m 0644 "$HERE/99-defectgate-gpio.rules" /etc/udev/rules.d/99-defectgate-gpio.rules
udevadm control --reload-rules
udevadm trigger --subsystem-match=gpio || true

say "5/6 venv in $PREFIX/venv (sees the system TensorRT)"
install -d -m 0755 "$PREFIX"
python3 -m venv --system-site-packages "$PREFIX/venv"
"$PREFIX/venv/bin/python" -m pip install -q --upgrade pip
"$PREFIX/venv/bin/python" -m pip install -q "${REPO}[jetson,station]" "cuda-python>=12.2,<13"
# JetPack's OpenCV is built with GStreamer (needed for nvarguscamerasrc / aravis pipelines); the pip
# wheel pulled in as a dependency is not. Prefer the system one when it has GStreamer.
if /usr/bin/python3 -c 'import cv2, re, sys; sys.exit(0 if re.search(r"GStreamer:\s+YES", cv2.getBuildInformation()) else 1)' 2>/dev/null; then
  "$PREFIX/venv/bin/python" -m pip uninstall -y -q opencv-python-headless opencv-python || true
  echo "using the system OpenCV (GStreamer enabled)"
else
  echo "warning: the system OpenCV has no GStreamer; gst:// camera URIs will not open (see docs/jetson.md)" >&2
fi
"$PREFIX/venv/bin/python" - <<'PY'
import tensorrt, cv2, defectgate
from cuda.bindings import runtime as cudart
err, n = cudart.cudaGetDeviceCount()
print(f"defectgate {defectgate.__version__}, TensorRT {tensorrt.__version__}, OpenCV {cv2.__version__}, CUDA devices {n}")
PY

if [ -n "$POWER_MODE" ]; then
  say "power mode $POWER_MODE"
  nvpmodel -m "$POWER_MODE"
  nvpmodel -q
fi

if [ "$INSTALL_SERVICE" -eq 1 ]; then
  say "6/6 systemd unit"
  sed -e "s|/opt/defectgate|$PREFIX|g" -e "s|^User=defectgate|User=$SERVICE_USER|" -e "s|^Group=defectgate|Group=$SERVICE_USER|" \
    "$HERE/defectgate.service" >/etc/systemd/system/defectgate.service
  systemctl daemon-reload
  systemctl enable defectgate.service
  if [ ! -f /etc/defectgate/station.yaml ]; then
    install -m 0644 "$REPO/configs/jetson-station.yaml" /etc/defectgate/station.yaml
    echo "installed an example /etc/defectgate/station.yaml: edit it before starting"
  fi
fi

cat <<DONE

Done. Next steps (docs/jetson.md, "Verify the install"):
  1. copy an ONNX bundle into /var/lib/defectgate/registry and build its engine on this board:
       sudo -u $SERVICE_USER $PREFIX/venv/bin/defectgate engine build --bundle BUNDLE --precision fp16
  2. edit /etc/defectgate/station.yaml (camera URI, ejector pin, belt geometry)
  3. log out and in (group gpio), then: sudo systemctl start defectgate; journalctl -u defectgate -f
DONE
