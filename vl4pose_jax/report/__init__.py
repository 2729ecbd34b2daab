"""Reports of AL runs, one module per question: `rows` (reading results.jsonl from workdirs),
`stats` (AUBC, mean ± std over seeds, paired comparison with a baseline), `kinds` (per-OOD-kind
diagnostics), `tables` (Markdown and CSV), `plots` (learning curves, per-kind panels, per-round
galleries and score histograms) and `files` (the report folder). The command line is
`python -m experiments.report`.
"""
