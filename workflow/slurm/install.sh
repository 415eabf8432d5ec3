#!/usr/bin/env bash
# Debian's SLURM and munge for the one-node test cluster (workflow/slurm/local_cluster.py,
# tests/test_cluster_slurm.py).
# Does nothing when they are installed; without root or apt-get it says so and the SLURM tests skip.
set -euo pipefail
for b in munged slurmctld slurmd sbatch srun squeue scontrol; do
    command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || { missing=1; break; }
done
[ -z "${missing:-}" ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install.sh: slurm-wlm/munge missing and no root apt-get here: the SLURM tests will skip" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
