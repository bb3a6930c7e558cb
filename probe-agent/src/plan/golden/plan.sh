#!/usr/bin/env bash
# tokenprobe migration: turn off service-account token automount where nothing uses it.
# Review before running. Between phases, run `probe-agent verify`.
set -euo pipefail

pause() { if [ -t 0 ]; then read -r -p "$1 — press Enter to go on" _; fi; }
# generated 2026-11-18T11:06:40Z

# --- phase 1: development — namespaces that look like development (dev, test, staging, …): break nothing that matters first
echo '== phase 1: development'
kubectl -n team-dev patch serviceaccount default --type strategic -p '{"automountServiceAccountToken":false}'
kubectl -n team-dev annotate serviceaccount default --overwrite tokenprobe.dev/evidence='deployment/sandbox: no token use by 1/1 replicas over 2d0h, seen from start'
kubectl -n team-dev rollout restart deployment/sandbox
kubectl -n team-dev rollout status deployment/sandbox --timeout=10m
pause 'phase 1 done: check `probe-agent verify`'

# --- phase 2: canary — a first slice of the remaining changes; watch it before going on
echo '== phase 2: canary'
kubectl -n ci patch deployment runner --type strategic -p '{"spec":{"template":{"spec":{"automountServiceAccountToken":false}}}}'
kubectl -n ci annotate deployment runner --overwrite tokenprobe.dev/evidence='no token use by 1/1 replicas over 2d0h, seen from start'
pause 'phase 2 done: check `probe-agent verify`'

# --- phase 3: rest — everything else
echo '== phase 3: rest'
kubectl -n shop patch deployment api --type strategic -p '{"spec":{"template":{"spec":{"automountServiceAccountToken":true}}}}'
kubectl -n shop annotate deployment api --overwrite tokenprobe.dev/evidence='token used by container app over 2d0h'
kubectl -n shop patch serviceaccount shared --type strategic -p '{"automountServiceAccountToken":false}'
kubectl -n shop annotate serviceaccount shared --overwrite tokenprobe.dev/evidence='deployment/worker: no token use by 2/2 replicas over 2d0h, seen from start'
kubectl -n shop patch serviceaccount web --type strategic -p '{"automountServiceAccountToken":false}'
kubectl -n shop annotate serviceaccount web --overwrite tokenprobe.dev/evidence='deployment/web: no token use by 3/3 replicas over 2d0h, seen from start'
kubectl -n legacy patch deployment reporter --type strategic -p '{"spec":{"template":{"spec":{"automountServiceAccountToken":false}}}}'
kubectl -n legacy annotate deployment reporter --overwrite tokenprobe.dev/evidence='no token use by 1/1 replicas over 2d0h, seen from start'
kubectl -n shop rollout restart deployment/web
kubectl -n shop rollout restart deployment/worker
kubectl -n shop rollout status deployment/web --timeout=10m
kubectl -n shop rollout status deployment/worker --timeout=10m
