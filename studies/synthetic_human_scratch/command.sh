#!/usr/bin/env bash
# Study: synthetic people retrained from scratch every round (the synthetic_human protocol with
# --retrain=scratch: every round re-initialised and trained 60 epochs with the plateau schedule,
# the best-on-validation state kept). The plan (studies/README.md, "Synthetic people, retrained
# from scratch: the plan") was committed before any informative method ran in this regime.
# One workdir per seed and group; each seed's rows are copied to raw/ when it finishes. Run it
# from a clean `git archive` of the commit in COMMIT, with STUDY_OUT pointing at this folder:
#   bash studies/synthetic_human_scratch/command.sh primary 0 1 2 ...   (or: secondary 0 1 ...)
set -euo pipefail
cd "$(dirname "$0")/../.."
R=${STUDY_RUNS:-runs/study_scratch}
OUT=${STUDY_OUT:-studies/synthetic_human_scratch}
mkdir -p "$OUT/raw"
group=$1; shift
case $group in
    primary) methods=random,vl4pose ;;
    secondary) methods=multipeak_entropy,learning_loss,coreset ;;
    *) echo "usage: $0 primary|secondary SEED..." >&2; exit 2 ;;
esac
for k in "$@"; do
    python -m experiments.al --dataset=synthetic_human --retrain=scratch --method="$methods" \
        --seed="$k" --trials=1 --workdir="$R/${group}_seed$k"
    cp "$R/${group}_seed$k/results.jsonl" "$OUT/raw/${group}_seed$k.jsonl"
    cp "$R/${group}_seed$k/config.json" "$OUT/raw/${group}_seed$k.config.json"
done
