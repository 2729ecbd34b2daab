"""Reading AL results: the rows of `results.jsonl` (one JSON object per method, seed and round)
from one or more workdirs, and what those rows hold. A workdir spec 'WORKDIR:m1,m2' reads only
the rows of methods m1 and m2 (e.g. a baseline trained in another workdir); two workdirs holding
the same (method, seed) are refused, since their rows would silently mix. `read_workdirs` also
says which workdir each run came from, so that a report can tell when a method is compared with
a baseline of another workdir (possibly another network). A resumed run rewrites its rows, so
`latest_rows` keeps the last row read per (method, seed, round). An unreadable last line (a write
cut by a kill) is skipped with a warning; any other unreadable line is an error naming it. The headline metric is the
first metric of a row; `number` turns a row value into a finite float or None.
"""
from __future__ import annotations

import collections
import json
import math
import pathlib
import sys


def parse_workdir(spec) -> tuple[pathlib.Path, set | None]:
    """'WORKDIR' or 'WORKDIR:method,method' (only those methods' rows) -> (path, methods)."""
    spec = str(spec)
    path, sep, names = spec.rpartition(":")
    if not sep or not names or pathlib.Path(spec).exists():
        return pathlib.Path(spec), None
    return pathlib.Path(path), {n for n in names.split(",") if n}


def _stderr(message: str):
    print(message, file=sys.stderr)


def read_workdirs(workdirs, warn=_stderr) -> tuple[list[dict], dict]:
    """The rows of every workdir ('WORKDIR[:method,...]', see `parse_workdir`) and where each
    run was read from: (rows, {(method, seed): workdir path}). Two workdirs holding the same
    (method, seed) are refused: their rows would silently mix; so is a line that is not a JSON
    object, except an unreadable last line without its newline (a write cut by a kill),
    skipped with a `warn`."""
    rows, owner = [], {}
    for spec in workdirs:
        w, methods = parse_workdir(spec)
        path = w / "results.jsonl"
        if not path.exists():
            raise FileNotFoundError(f"no results.jsonl in {w}")
        text = path.read_text()
        lines = text.splitlines()
        # A row is written whole with its newline: a last line without one was cut by a kill.
        last = len(lines) if text and not text.endswith("\n") else 0
        for i, line in enumerate(lines, 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except (json.JSONDecodeError, RecursionError) as err:
                    if i == last:   # what a kill in the middle of writing leaves
                        warn(f"warning: {path}:{i}: the last line is not a whole JSON row "
                             f"({getattr(err, 'msg', err)}), e.g. cut by a kill while "
                             "writing: skipped")
                        continue
                    raise ValueError(f"{path}:{i}: not a JSON row "
                                     f"({getattr(err, 'msg', err)})") from None
                if not isinstance(row, dict):
                    raise ValueError(f"{path}:{i}: a JSON {type(row).__name__}, not a row "
                                     "(an object with method, seed, round, metrics)")
                if methods is not None and row.get("method") not in methods:
                    continue
                key = (row.get("method"), row.get("seed"))
                if owner.setdefault(key, w) != w:
                    raise ValueError(
                        f"{owner[key]} and {w} both hold {key[0]!r} seed {key[1]}; keep one, "
                        f"e.g. '{w}:METHOD,...' reads only the methods named")
                rows.append(row)
    return rows, owner


def read_rows(workdirs, warn=_stderr) -> list[dict]:
    """The rows of `read_workdirs`."""
    return read_workdirs(workdirs, warn)[0]


def read_results(workdirs) -> tuple[list[dict], dict]:
    """`read_workdirs`, refusing (ValueError) workdirs that hold no row at all."""
    rows, sources = read_workdirs(workdirs)
    if not rows:
        raise ValueError("no result rows in " + ", ".join(f"{w}/results.jsonl" for w in workdirs))
    return rows, sources


def latest_rows(rows) -> list[dict]:
    """One row per (method, seed, round), the last one read (a resumed run rewrites its rows)."""
    keep = {}
    for r in rows:
        keep[(r["method"], r["seed"], r.get("round", r.get("num_labelled")))] = r
    return list(keep.values())


def headline_metric(rows):
    """The name of the first row's first metric (None without rows)."""
    return next(iter(rows[0]["metrics"])) if rows else None


def methods(rows) -> list:
    """The methods in the order their first row appears."""
    return list(dict.fromkeys(r["method"] for r in rows))


def seed_counts(rows) -> dict:
    """{method: number of distinct seeds}."""
    seeds = collections.defaultdict(set)
    for r in rows:
        seeds[r["method"]].add(r["seed"])
    return {m: len(s) for m, s in seeds.items()}


def number(value):
    """A finite float, or None for an absent, non-numeric or non-finite value."""
    if isinstance(value, bool):
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
