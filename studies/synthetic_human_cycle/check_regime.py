"""The study's regime check on random's rows alone (studies/README.md, the plan): per seed,
round-0 in-distribution test PCK@0.2 >= 70 and no fall of more than 2 points from one round to
the next. Reads only rows whose method is 'random'; prints one line per seed and, last, a JSON
summary (`failing`: the seeds that fail).

    python studies/synthetic_human_cycle/check_regime.py [RAW_FOLDER]
"""
import json
import pathlib
import sys

FLOOR, MAX_DROP = 70.0, 2.0


def random_curves(folder: pathlib.Path) -> dict:
    """{seed: [in-distribution PCK@0.2 by round]} from random's rows of every raw/*.jsonl."""
    curves: dict = {}
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if row["method"] != "random":
                continue
            value = row["metrics_by_kind"]["in_distribution"]["pck@0.2"]
            curves.setdefault(row["seed"], {})[row["round"]] = value
    return {seed: [c[r] for r in sorted(c)] for seed, c in sorted(curves.items())}


def check(curve: list) -> bool:
    return curve[0] >= FLOOR and all(b - a >= -MAX_DROP for a, b in zip(curve, curve[1:]))


def main(argv) -> int:
    folder = pathlib.Path(argv[1] if len(argv) > 1 else pathlib.Path(__file__).parent / "raw")
    curves = random_curves(folder)
    for seed, curve in curves.items():
        print(f"seed {seed}: " + " -> ".join(f"{v:.1f}" for v in curve)
              + ("  ok" if check(curve) else "  FAILS"))
    print(json.dumps({"seeds": len(curves), "pass": sum(map(check, curves.values())),
                      "failing": [seed for seed, curve in curves.items() if not check(curve)]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
