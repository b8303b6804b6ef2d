#!/usr/bin/env bash
# A real Slurm cluster on this machine: one controller and two simulated nodes (mvf-n1,
# mvf-n2), each node a slurmd on its own port. For the `slurm` tests and for trying the
# job templates in experiments/slurm/ by hand.
#
#   tests/slurm/cluster.sh start [DIR]   install Slurm + munge if missing (apt-get, as root),
#                                        write DIR/slurm.conf, start munge and the daemons,
#                                        print the line to export (SLURM_CONF=DIR/slurm.conf)
#   tests/slurm/cluster.sh stop [DIR]    cancel its jobs, stop the daemons it started (PIDs)
#
# DIR defaults to $MVF_SLURM_DIR or /tmp/mvf-slurm. Exit status 3 means Slurm is not
# installed and cannot be installed here (no apt-get or not root): tests skip on it.
set -euo pipefail

ACTION=${1:-}
DIR=${2:-${MVF_SLURM_DIR:-/tmp/mvf-slurm}}
NODES=(mvf-n1 mvf-n2)
CPUS_PER_NODE=${MVF_SLURM_CPUS:-4}   # per simulated node; may exceed the real cores
CONF="$DIR/slurm.conf"

die() { echo "cluster.sh: $*" >&2; exit "${2:-1}"; }

install_slurm() {
  local missing=()
  for tool in slurmctld slurmd sbatch munged; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || missing+=("$tool")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    die "Slurm is not installed (missing: ${missing[*]}) and cannot be installed here: needs root and apt-get" 3
  fi
  echo "cluster.sh: installing slurmctld slurmd slurm-client munge (apt-get)" >&2
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends slurmctld slurmd slurm-client munge; } >"$DIR/apt.log" 2>&1; then
    die "apt-get could not install Slurm (see $DIR/apt.log)" 3
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    return 0  # a munged is already running (not ours: left alone on stop)
  fi
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
  [ -f /etc/munge/munge.key ] || die "no /etc/munge/munge.key (reinstall munge)"
  if [ "$(id -u)" = 0 ]; then
    runuser -u munge -- /usr/sbin/munged
  else
    /usr/sbin/munged
  fi
  for _ in $(seq 50); do
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
      cat /run/munge/munged.pid >"$DIR/munged.pid"
      return 0
    fi
    sleep 0.1
  done
  die "munged did not start"
}

write_config() {
  local ctld_port node_lines="" port
  ctld_port=$(free_port)
  for node in "${NODES[@]}"; do
    port=$(free_port)
    node_lines+="NodeName=$node NodeHostname=localhost NodeAddr=127.0.0.1 Port=$port CPUs=$CPUS_PER_NODE State=UNKNOWN"$'\n'
    mkdir -p "$DIR/spool/$node"
  done
  mkdir -p "$DIR/state"
  cat >"$CONF" <<EOF
# Written by tests/slurm/cluster.sh: two simulated nodes on this machine.
ClusterName=mvftest
SlurmctldHost=localhost
SlurmctldPort=$ctld_port
SlurmUser=$(id -un)
AuthType=auth/munge
# Short credential lifetime and scheduling intervals: a requeued job restarts in ~15 s.
AuthInfo=cred_expire=10
SchedulerParameters=sched_interval=1,bf_interval=1
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd-%n.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd-%n.log
# No cgroups and no accounting database on this machine.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=5
MailProg=/bin/true
$node_lines
PartitionName=debug Nodes=$(IFS=,; echo "${NODES[*]}") Default=YES MaxTime=INFINITE State=UP
EOF
}

add_hosts() {
  # torch's rendezvous resolves the first node's name: map the node names to this machine.
  local missing=()
  for node in "${NODES[@]}"; do
    getent hosts "$node" >/dev/null 2>&1 || missing+=("$node")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ -w /etc/hosts ] || die "add '127.0.0.1 ${missing[*]}' to /etc/hosts (needs root)"
  echo "127.0.0.1 ${missing[*]}  # mvf_lightning tests/slurm/cluster.sh" >>/etc/hosts
}

start() {
  mkdir -p "$DIR"
  [ -f "$DIR/slurmctld.pid" ] && kill -0 "$(cat "$DIR/slurmctld.pid")" 2>/dev/null &&
    die "a cluster is already running in $DIR (stop it first: $0 stop $DIR)"
  install_slurm
  add_hosts
  start_munge
  write_config
  export SLURM_CONF="$CONF"
  /usr/sbin/slurmctld -c -f "$CONF"
  for node in "${NODES[@]}"; do
    /usr/sbin/slurmd -f "$CONF" -N "$node"
  done
  for _ in $(seq 100); do
    if [ "$(sinfo -h -N -t idle -o %N 2>/dev/null | sort -u | wc -l)" = "${#NODES[@]}" ]; then
      echo "export SLURM_CONF=$CONF"
      return 0
    fi
    sleep 0.2
  done
  sinfo >&2 || true
  tail -n 20 "$DIR/slurmctld.log" >&2 || true
  die "the nodes did not become idle (logs in $DIR)"
}

stop_pid_file() {
  local file=$1 pid
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

stop() {
  [ -f "$CONF" ] || die "no cluster config in $DIR"
  export SLURM_CONF="$CONF"
  if [ -f "$DIR/slurmctld.pid" ] && kill -0 "$(cat "$DIR/slurmctld.pid")" 2>/dev/null; then
    scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
    for _ in $(seq 100); do
      [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
      sleep 0.2
    done
  fi
  for node in "${NODES[@]}"; do stop_pid_file "$DIR/slurmd-$node.pid"; done
  stop_pid_file "$DIR/slurmctld.pid"
  stop_pid_file "$DIR/munged.pid"   # only if this script started munged
}

case "$ACTION" in
  start) start ;;
  stop) stop ;;
  *) die "usage: $0 start|stop [DIR]" 2 ;;
esac
