#!/usr/bin/env bash
# The random-only pilot behind the regime choice (studies/README.md, the plan): seed 0 of the
# families config with 20 epochs per cycle, run on the working tree at commit b074a47 (before the
# protocol named these values its defaults), 2026-12-06, while two agents began reading code
# beside it. Its round 0 is the study's (the same settings).
set -euo pipefail
cd "$(dirname "$0")/../../.."
python -m experiments.al --dataset=synthetic_human --data_config=families --method=random \
    --seed=0 --trials=1 --epochs=60 --cycle_epochs=20 --lr_schedule=plateau \
    --optimizer_state=fresh --select_best --workdir=runs/pilot27/a
