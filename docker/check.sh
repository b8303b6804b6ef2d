#!/usr/bin/env bash
# Build docker/Dockerfile with podman and train the demo inside the container, on machines that
# reach no container registry (Debian's packages and PyPI only):
#   1. base   a Debian base image made here from Debian's packages (mmdebstrap -> podman import),
#             kept between runs under a tag that names its contents;
#   2. uv     an image holding /uv and /uvx from the uv wheel on PyPI (the Dockerfile's version),
#             standing in for ghcr.io/astral-sh/uv;
#   3. image  docker/Dockerfile built on those two (BASE_IMAGE, UV_IMAGE, PYTHON_SOURCE=system),
#             with the host's uv cache mounted so the locked torch is not downloaded again;
#   4. fit    `fit --config configs/demo.yaml`, shortened, in the container on the CPU, as the
#             image's user 1000, no network, host folders mounted at /data and /runs;
#   5. load   the checkpoint is on the host and loads with torch.load(weights_only=True).
# Prints each phase's seconds; on failure, the log's tail and one line `check.sh: FAILED ...`.
# Idempotent: cached images are reused, the containers it makes are removed.
#
# Usage: docker/check.sh [--out DIR]
#   --out DIR   host folder for data/, runs/ and logs/ (kept); default: a temporary folder,
#               removed on success.
# Environment: MVF_CHECK_IMAGE (default localhost/mvf_lightning:check), MVF_CHECK_FIT_ARGS
# (replaces the shortening overrides), MVF_CHECK_NO_INSTALL=1 (never apt-get install).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

IMAGE=${MVF_CHECK_IMAGE:-localhost/mvf_lightning:check}
SUITE=bookworm
# What the Dockerfile needs of its base: apt-get (the Dockerfile installs these three itself
# too), useradd (passwd) and, with PYTHON_SOURCE=system, Python 3.11 (uv's own download of a
# standalone Python needs GitHub, which is out of reach here).
BASE_PACKAGES=(ca-certificates libgl1 libglib2.0-0 passwd python3.11)
FIT_ARGS=(--trainer.max_epochs=1 --trainer.limit_train_batches=2 --trainer.limit_val_batches=0
          --trainer.num_sanity_val_steps=0 --trainer.enable_progress_bar=false
          --trainer.callbacks.monitor=null)
if [ -n "${MVF_CHECK_FIT_ARGS:-}" ]; then
  read -r -a FIT_ARGS <<<"$MVF_CHECK_FIT_ARGS"
fi

OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=${2:?--out needs a folder}; shift 2 ;;
    --out=*) OUT=${1#--out=}; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "check.sh: FAILED (arguments): unknown argument $1" >&2; exit 2 ;;
  esac
done
KEEP_OUT=1
if [ -z "$OUT" ]; then
  OUT=$(mktemp -d "${TMPDIR:-/tmp}/mvf-docker-check.XXXXXX")
  KEEP_OUT=0
fi
mkdir -p "$OUT/logs"
OUT=$(cd "$OUT" && pwd)
LOGS=$OUT/logs

PHASE=setup
PHASE_LOG=""
TIMINGS=()
CONTAINER=mvf-check-$$
CHECK_START=$SECONDS

cleanup() {
  local rc=$?
  if command -v podman >/dev/null 2>&1; then
    podman rm --force --ignore "$CONTAINER" >/dev/null 2>&1 || true
  fi
  if [ "$rc" = 0 ] && [ "$KEEP_OUT" = 0 ]; then
    rm -rf "$OUT"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# fail MESSAGE: the phase log's tail, then one line. Exit 3 when podman cannot be installed or
# run on this machine (tests/experiments/test_docker.py skips then), else 1.
fail() {
  if [ -n "$PHASE_LOG" ] && [ -s "$PHASE_LOG" ]; then
    echo "---- last lines of $PHASE_LOG" >&2
    tail -n 25 "$PHASE_LOG" >&2
    echo "----" >&2
  fi
  echo "check.sh: FAILED ($PHASE): $* (logs: $LOGS)" >&2
  if [ "$PHASE" = tools ]; then exit 3; fi
  exit 1
}

# begin NAME: a phase with its own log; done_phase prints its seconds.
begin() {
  PHASE=$1
  PHASE_LOG=$LOGS/$1.log
  : >"$PHASE_LOG"
  PHASE_START=$SECONDS
  echo "check.sh: $1 ..."
}
done_phase() {
  local took=$((SECONDS - PHASE_START))
  TIMINGS+=("$PHASE=${took}s${1:+ ($1)}")
  echo "check.sh: $PHASE done in ${took}s${1:+ ($1)}"
}
log() { "$@" >>"$PHASE_LOG" 2>&1; }

# ---------------------------------------------------------------------------- 0. tools
begin tools
need=()
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v runc >/dev/null 2>&1 || need+=(runc)
command -v mmdebstrap >/dev/null 2>&1 || need+=(mmdebstrap)
command -v uv >/dev/null 2>&1 || fail "uv is not installed (the host's uv cache feeds the build)"
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || [ "${MVF_CHECK_NO_INSTALL:-0}" = 1 ] || ! command -v apt-get >/dev/null 2>&1; then
    fail "missing ${need[*]}; install them (Debian: apt-get install podman runc mmdebstrap) or run as root"
  fi
  log apt-get update -qq || fail "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive log apt-get install -y -qq --no-install-recommends \
    podman runc mmdebstrap conmon containernetworking-plugins iptables ca-certificates \
    || fail "apt-get install ${need[*]} failed"
fi
# Podman's defaults need what these machines lack: crun refuses the hybrid cgroup v1/v2 layout
# (runc accepts it), and a root container's default rlimits (1048576 open files and processes)
# need CAP_SYS_RESOURCE, which root lacks here. So: runc, the open-file limit we have, and a
# process limit no higher than the kernel's pid_max (podman ran with 32768 = pid_max here and
# a container asking more failed). A private containers.conf, for this script only.
CONF_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/mvf_lightning/docker-check
mkdir -p "$CONF_DIR"
nofile=$(ulimit -Hn)
nproc=$(ulimit -Hu)
pid_max=$(cat /proc/sys/kernel/pid_max 2>/dev/null || echo 32768)
[ "$nofile" = unlimited ] && nofile=1048576
if [ "$nproc" = unlimited ] || [ "$nproc" -gt "$pid_max" ]; then nproc=$pid_max; fi
cat >"$CONF_DIR/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF=$CONF_DIR/containers.conf
log podman info || fail "podman does not run here (podman info)"
done_phase "$(podman --version), $(runc --version | head -n 1), $(grep -m1 -o 'graphDriverName: [a-z]*' "$PHASE_LOG")"

# ---------------------------------------------------------------------------- 1. base
begin base
# Locally added CA certificates (a TLS-inspecting proxy's, say) go into the base image so
# the build reaches PyPI as the host does; they are part of the tag.
extra_ca=()
for crt in /usr/local/share/ca-certificates/*.crt; do
  [ -f "$crt" ] && extra_ca+=("$crt")
done
tag_src=$(printf '%s\n' "$SUITE" "${BASE_PACKAGES[@]}" v1; cat ${extra_ca[@]+"${extra_ca[@]}"} </dev/null)
BASE_IMAGE=localhost/mvf-debian-base:$SUITE-$(printf '%s' "$tag_src" | sha256sum | cut -c1-12)
if podman image exists "$BASE_IMAGE"; then
  done_phase "cached: $BASE_IMAGE"
else
  tarball=$OUT/base.tar
  hooks=()
  if [ ${#extra_ca[@]} -gt 0 ]; then
    # shellcheck disable=SC2016  # "$1" is mmdebstrap's, not ours
    hooks+=(--customize-hook="copy-in ${extra_ca[*]} /usr/local/share/ca-certificates/"
            --customize-hook='chroot "$1" update-ca-certificates')
  fi
  packages=$(IFS=,; echo "${BASE_PACKAGES[*]}")
  log mmdebstrap --variant=minbase --include="$packages" ${hooks[@]+"${hooks[@]}"} \
    "$SUITE" "$tarball" || fail "mmdebstrap $SUITE failed"
  log podman import \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    "$tarball" "$BASE_IMAGE" || fail "podman import of the Debian base failed"
  rm -f "$tarball"
  done_phase "built: $BASE_IMAGE"
fi

# ---------------------------------------------------------------------------- 2. uv
begin uv
UV_VERSION=$(sed -n 's|^ARG UV_IMAGE=ghcr.io/astral-sh/uv:\([0-9.]*\)$|\1|p' docker/Dockerfile)
[ -n "$UV_VERSION" ] || fail "docker/Dockerfile: no 'ARG UV_IMAGE=ghcr.io/astral-sh/uv:<version>'"
UV_IMAGE=localhost/mvf-uv:$UV_VERSION
if podman image exists "$UV_IMAGE"; then
  done_phase "cached: $UV_IMAGE"
else
  uvdir=$OUT/uv-image
  mkdir -p "$uvdir/wheel"
  if python3 -m pip --version >/dev/null 2>&1; then
    log python3 -m pip download --no-deps --only-binary=:all: --dest "$uvdir/wheel" \
      "uv==$UV_VERSION" || fail "pip download uv==$UV_VERSION failed"
  else
    log uvx pip download --no-deps --only-binary=:all: --dest "$uvdir/wheel" \
      "uv==$UV_VERSION" || fail "pip download uv==$UV_VERSION failed"
  fi
  log python3 - "$uvdir" <<'EOF' || fail "the uv wheel has no uv/uvx binaries"
import pathlib, sys, zipfile
out = pathlib.Path(sys.argv[1])
wheel = next((out / "wheel").glob("uv-*.whl"))
with zipfile.ZipFile(wheel) as zf:
    for name in ("uv", "uvx"):
        member = next(m for m in zf.namelist() if m.endswith(f".data/scripts/{name}"))
        (out / name).write_bytes(zf.read(member))
        (out / name).chmod(0o755)
EOF
  printf 'FROM scratch\nCOPY uv uvx /\n' >"$uvdir/Containerfile"
  log podman build --force-rm --file "$uvdir/Containerfile" --tag "$UV_IMAGE" "$uvdir" \
    || fail "podman build of $UV_IMAGE failed"
  rm -rf "$uvdir"
  done_phase "built: $UV_IMAGE from the uv $UV_VERSION wheel"
fi

# ---------------------------------------------------------------------------- 3. image
begin image
UV_CACHE=$(uv cache dir)
mkdir -p "$UV_CACHE"
previous=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
log podman build --force-rm --layers \
  --file docker/Dockerfile --tag "$IMAGE" \
  --build-arg BASE_IMAGE="$BASE_IMAGE" \
  --build-arg UV_IMAGE="$UV_IMAGE" \
  --build-arg PYTHON_SOURCE=system \
  --build-arg UV_CACHE_DIR=/root/.cache/uv-host \
  --volume "$UV_CACHE:/root/.cache/uv-host" \
  . || fail "podman build -f docker/Dockerfile failed"
current=$(podman image inspect --format '{{.Id}}' "$IMAGE")
if [ -n "$previous" ] && [ "$previous" != "$current" ]; then
  # the image this tag named before (its layers up to a changed step stay shared)
  log podman rmi "$previous" || true
fi
done_phase "$IMAGE, $(podman image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.1f GB", $1/1e9}')"

# ---------------------------------------------------------------------------- 4. fit
begin fit
rm -rf "$OUT/data" "$OUT/runs"
mkdir -p "$OUT/data" "$OUT/runs"
userns=()
if [ "$(id -u)" = 0 ]; then
  chown 1000:1000 "$OUT/data" "$OUT/runs"   # the image's user writes there
else
  # shellcheck disable=SC2054  # one option, its commas podman's
  userns=(--userns=keep-id:uid=1000,gid=1000)
fi
log podman run --rm --name "$CONTAINER" --network none --shm-size 1g \
  ${userns[@]+"${userns[@]}"} \
  --volume "$OUT/data:/data" --volume "$OUT/runs:/runs" \
  --env MVF_LIGHTNING_DEMO_ROOT=/data/demo \
  "$IMAGE" fit --config configs/demo.yaml "${FIT_ARGS[@]}" \
  || fail "fit --config configs/demo.yaml failed in the container"
done_phase "in the container, CPU, as uid 1000"

# ---------------------------------------------------------------------------- 5. load
begin load
CKPT=$(find "$OUT/runs" -name '*.ckpt' -type f | sort | tail -n 1)
[ -n "$CKPT" ] || fail "no .ckpt under $OUT/runs (the host folder mounted at /runs)"
if [ -x .venv/bin/python ] && .venv/bin/python -c 'import torch' >/dev/null 2>&1; then
  py=(.venv/bin/python)
else
  py=(uv run --frozen python)
fi
log "${py[@]}" - "$CKPT" <<'EOF' || fail "torch.load(weights_only=True) of $CKPT failed"
import sys, torch
ckpt = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
print(f"loaded {sys.argv[1]}: epoch {ckpt['epoch']}, global_step {ckpt['global_step']}, "
      f"{len(ckpt['state_dict'])} tensors, torch {torch.__version__}")
EOF
echo "check.sh: checkpoint on the host: $CKPT ($(stat -c %s "$CKPT") bytes, owner uid $(stat -c %u "$CKPT"))"
echo "check.sh: $(grep '^loaded ' "$PHASE_LOG")"
done_phase "torch.load(weights_only=True) on the host"

echo "check.sh: OK in $((SECONDS - CHECK_START))s: ${TIMINGS[*]}"
