"""The active-learning simulator: `run(config, workdir)` plays whole AL protocols (rounds of train
→ evaluate on the test split → score the unlabelled pool → select `budget` → label) for several
methods and seeds, saving the train state, the labelled ids and the round results at the end of
every round (`workdir`), so that rerunning on the same workdir resumes exactly where a killed run
stopped. Every random choice derives from `config.seed` (`protocol.round_key`), so a resumed run
ends with exactly the labelled sets and metrics of an uninterrupted one on the same machine.
`experiments/al.py` is the command-line front end.

This module is the driver and reads top to bottom: `run` → per seed the shared round 0
(`shared_round0`) → per method `run_method`, whose loop is: restore → train (`fit`) →
evaluate (`evaluation`) → score the test split and select (`acquire`) → checkpoint. What an
experiment is lives in `protocol`, which networks in `nets`, the records in `records`, the
layout of the workdir in `workdir`.

A fair instrument: round 0 is trained once for all methods of a seed that train the same network
(`shared_round0`, equal to separate runs), the optional random pre-subset is one per (seed, round)
for every method (`records.pre_subset_pool`), and every round records per-OOD-kind accuracy, OOD
AUROC and selection shares, the test-split Spearman between score and error and VL4Pose's
refinement.

Training is data-parallel over every device of every process (`parallel.train_mesh`; the
global batch `batch_size` is split evenly, each process loading only its rows through grain's
`ShardByJaxProcess`); evaluation runs on each process's own copy of the state; pool scoring is
shared between processes (`acquisition.stream`). Only the primary process writes results and
plots; every process takes part in Orbax's checkpoints, whose data-iterator states are stored
per process. A run repeats exactly on the same device count; on another device count it is the
same run up to float reduction order, which Adam amplifies over epochs (tests/test_parallel.py,
tests/test_distributed.py); with several processes the records of each training batch differ
(each process shuffles its own shard), so results depend on the process count.
"""
from __future__ import annotations

import dataclasses
import pathlib
import time

import jax
import numpy as np

from vl4pose_jax import parallel, preemption, workdir as wd
from vl4pose_jax.acquire import acquire, score_test_split
from vl4pose_jax.evaluation import evaluate, predict_test, selected_examples
from vl4pose_jax.fit import copy_state, fit, start_training
from vl4pose_jax.nets import Nets, is_scheduled, learning_rate, multi_step, nets_for
from vl4pose_jax.protocol import Config, SimulatedCrash, SimulationError, round_key
from vl4pose_jax.records import Data, initial_labelled, validate


def run(config: Config, workdir, *, data_: Data | None = None, log=print,
        on_round=None) -> list[dict]:
    """Run (or resume) every (method, seed) of `config` in `workdir`; returns the result rows
    (also in `workdir/results.jsonl`, one per finished round, ordered by method, seed, round).
    `on_round(row, extras)` (e.g. plots) is called after each round's checkpoint, with extras
    {'selection': `acquisition.Selection` or None, 'examples': `selected_examples` or None};
    if it has a `missing(row)` attribute that is true for the round a resume restores, that
    round's call is repeated (a kill between checkpoint and plots). The workdir is locked for
    the run (`workdir.lock`); a signal noted by `preemption` stops the run at the next
    checkpoint with `preemption.Interrupted`."""
    workdir = pathlib.Path(workdir)
    with wd.lock(workdir):
        d = data_ if data_ is not None else validate(config)
        wd.check_config(config, workdir)
        if not parallel.is_primary():  # one process speaks and plots for all
            log, on_round = (lambda *a, **k: None), None
        rows_by_run: dict = {}
        for seed in range(config.seed, config.seed + config.trials):
            cfg = dataclasses.replace(config, seed=seed)
            shared = shared_round0(cfg, d, workdir, log)
            for first, method in enumerate(config.methods):
                key = (first, seed)
                rows_by_run[key] = []
                run_method(cfg, d, method, workdir, rows_by_run, key, log, on_round,
                           round0=shared.pop(method, None))
        return [row for k in sorted(rows_by_run) for row in rows_by_run[k]]


def shared_round0(config: Config, d: Data, workdir: pathlib.Path, log=print) -> dict:
    """The first round's training, done once for the methods of `config.seed` that have not
    finished round 0 and would train the same network: {method: (trained state, seconds)}.
    Heatmap methods: every one (same initial set, key and data order; auxiliary nets see
    detached features, and `train.make_heatmap_multi_step` trains every method's auxiliary net
    beside the hourglass, so each method gets the state its own training would give; the
    validation loss, the schedule and the best state depend on the hourglass alone).
    Regression methods: each group of two or more with the same network and no auxiliary net
    (e.g. random, coreset, coregcn and uncertaingcn on DeepPrior; mc_dropout and cke on
    Bayesian DeepPrior). Values: (trained state, seconds, `fit.Training` or None). Empty
    without such a group, with `init_from` or without `share_round0`. Mid-training
    checkpoints go to `checkpoints/round0_shared/seed_<seed>/`
    (heatmap) or `checkpoints/round0_shared_<first method of the group>/seed_<seed>/`."""
    if config.init_from or not config.share_round0 or config.epochs == 0:
        return {}
    todo = [m for m in config.methods if not wd.finished_round0(workdir, m, config.seed)]
    by_method = {m: nets_for(config, m) for m in todo}
    key = round_key(config.seed, 0, "init")
    out = {}
    if config.task == "heatmap":
        if len(todo) < 2:
            return {}
        inits = {m: n.init(key) for m, n in by_method.items()}
        heads = {n.aux.head: m for m, n in by_method.items() if n.aux is not None}
        state = inits[todo[0]].replace(
            aux_params={h: inits[m].aux_params for h, m in heads.items()},
            aux_opt_state={h: inits[m].aux_opt_state for h, m in heads.items()})
        skeleton = d.source.skeleton
        shared = dataclasses.replace(by_method[todo[0]], step=multi_step(
            skeleton, config.preset, tuple(sorted(heads)), learning_rate(config),
            config.precision, is_scheduled(config)))
        state, seconds, training = _train_round0(config, d, workdir, "round0_shared", todo,
                                                 shared, state, log)
        for m, n in by_method.items():
            head = None if n.aux is None else n.aux.head
            out[m] = (copy_state(state.replace(
                aux_params=None if head is None else state.aux_params[head],
                aux_opt_state=None if head is None else state.aux_opt_state[head])), seconds,
                training)
        return out
    groups: dict = {}  # `nets` is cached: methods with equal networks share one Nets object
    for m, n in by_method.items():
        if n.aux is None:
            groups.setdefault(id(n), []).append(m)
    for group in (g for g in groups.values() if len(g) >= 2):
        n = by_method[group[0]]
        state, seconds, training = _train_round0(config, d, workdir, f"round0_shared_{group[0]}",
                                                 group, n, n.init(key), log)
        out.update({m: (copy_state(state), seconds, training) for m in group})
    return out


def _train_round0(config: Config, d: Data, workdir: pathlib.Path, name: str, methods: list,
                  n: Nets, state, log) -> tuple:
    """Round 0 of `config.seed` trained once for `methods`, resumable from its mid-training
    checkpoints in `checkpoints/<name>/seed_<seed>/training`: (state, seconds, training)."""
    state = parallel.replicate(state, parallel.train_mesh())
    mid = wd.MidRound(wd.run_dir(workdir, name, config.seed), f"[seed {config.seed}] shared:",
                      log, config.crash_at, with_best=config.select_best)
    state, resume = mid.resume(state, 0)
    training = start_training(config, resume.pop("training", None))
    log(f"[seed {config.seed}] round 0 trained once for {', '.join(methods)}")
    t0 = time.perf_counter()
    state = fit(config, d, n, state, initial_labelled(config, d), config.epochs, 0,
                f"s{config.seed} r0 shared", training=training, checkpoint=mid.saver(0),
                **resume)
    seconds = round(time.perf_counter() - t0, 3)
    mid.close()
    return state, seconds, training


def run_method(config: Config, d: Data, method: str, workdir: pathlib.Path, rows_by_run,
               run_key, log, on_round=None, round0=None):
    """Rounds of one (method, seed); `round0`: (state, seconds, training) of a shared first
    training."""
    n = nets_for(config, method)
    who = f"[{method} seed {config.seed}]"
    base = wd.run_dir(workdir, method, config.seed)
    mngr = wd.manager(base / "rounds")
    first = run_key[0] == 0   # crash_at (tests) acts on the first method only
    mid = wd.MidRound(base, who, log, config.crash_at if first else None,
                      with_best=config.select_best)
    mesh = parallel.train_mesh()
    state = parallel.replicate(n.init(round_key(config.seed, 0, "init")), mesh)
    if config.init_from and mngr.latest_step() is None:  # fine-tune a previous run's weights
        prev = wd.load_trained(config.init_from, method=method, seed=None,
                               data_dir=config.data_dir)
        state = parallel.replicate(prev.state, mesh)
        log(f"{who} starting from {config.init_from} (round {prev.meta.get('round')})")
    labelled_N = initial_labelled(config, d)
    start = 0
    rows = rows_by_run[run_key]
    last, restored, meta = wd.restore_or_explain(mngr, state, log=log)
    if last is not None:
        state = restored
        labelled_N = np.asarray(meta["labelled_indices"], np.int64)
        if [d.ids[i] for i in labelled_N] != meta["labelled_ids"]:
            raise SimulationError(f"the labelled ids in {mngr.directory} do not match the "
                                  "dataset; was it rebuilt?")
        rows.extend(meta["results"])
        start = last + 1
        if start <= config.rounds:
            log(f"{who} resuming after round {last}")
        _replot(config, d, n, state, method, labelled_N, rows[-1], on_round, log)
    for rnd in range(start, config.rounds + 1):
        if rnd > 0 and config.retrain == "scratch":
            state = parallel.replicate(n.init(round_key(config.seed, rnd, "init")), mesh)
        # --init_from fine-tunes: its round 0 is a cycle of the warm-started schedule
        from_scratch = rnd == 0 and not config.init_from
        epochs = (config.epochs if from_scratch or config.retrain == "scratch"
                  else config.cycle_epochs)
        warm = config.init_from if rnd == 0 else config.retrain == "finetune"
        if warm and config.optimizer_state == "fresh":   # a new Adam, as the reference
            state = n.fresh_optimizer(state)
        state, resume = mid.resume(state, rnd)
        training = start_training(config, resume.pop("training", None))
        t0 = time.perf_counter()
        if rnd == 0 and round0 is not None:
            state, seconds_train, training = round0
            state = parallel.replicate(state, mesh)
        else:
            state = fit(config, d, n, state, labelled_N, epochs, rnd,
                        f"{method} s{config.seed} r{rnd}", training=training,
                        checkpoint=mid.saver(rnd), **resume)
            seconds_train = time.perf_counter() - t0
        predictions = predict_test(config, d, n, state)
        row = {"method": method, "seed": config.seed, "round": rnd,
               "num_labelled": int(len(labelled_N)),
               **evaluate(config, d, n, state, predictions),
               **score_test_split(config, d, n, state, method, predictions, rnd),
               "selected_ids": [], "seconds_train": round(seconds_train, 3), "seconds_score": 0.0,
               **({} if training is None else training.row())}
        sel, examples = None, None
        if rnd < config.rounds:
            t0 = time.perf_counter()
            sel, stats = acquire(config, d, n, state, method, labelled_N, rnd)
            row["seconds_score"] = round(time.perf_counter() - t0, 3)
            row["selected_ids"] = [d.ids[i] for i in sel.indices]
            row.update(stats)
            labelled_N = np.concatenate([labelled_N, sel.indices]).astype(np.int64)
            if on_round is not None:
                examples = selected_examples(config, d, n, state, sel.indices)
        rows.append(row)
        meta = {"round": rnd, "labelled_indices": labelled_N.tolist(),
                "labelled_ids": [d.ids[i] for i in labelled_N], "results": rows,
                "config": config.identity()}
        wd.save(mngr, rnd, state, meta)
        wd.write_results(workdir, rows_by_run)
        name, value = next(iter(row["metrics"].items()))
        log(f"{who} round {rnd}: {row['num_labelled']} labelled, "
            f"{name} {value:.2f}, train {seconds_train:.1f}s, score {row['seconds_score']:.1f}s"
            + ("" if training is None else
               f", {row['epochs_run']} epochs (best {row['best_epoch']}, final lr "
               f"{row['final_lr']:.3g})")
            + (f", {row['num_scored']} scored" if "num_scored" in row else "")
            + (f", OOD AUROC {row['ood_auroc']:.3f}" if "ood_auroc" in row else ""))
        if on_round is not None:
            on_round(row, {"selection": sel, "examples": examples})
        if config.crash_at == f"round:{rnd}" and first:
            raise SimulatedCrash(f"simulated crash after round {rnd}")
        signum = preemption.requested(collective=True)
        if signum:
            raise preemption.Interrupted(signum, f"round {rnd} of {method} seed {config.seed} "
                                         f"({mngr.directory})")
    mngr.close()
    mid.close()
    wd.write_results(workdir, rows_by_run)


def _replot(config: Config, d: Data, n: Nets, state, method: str, labelled_N, row: dict,
            on_round, log):
    """Call `on_round` again for the restored round `row` when `on_round.missing(row)` (a kill
    between the round's checkpoint and its plots): the selection is recomputed from the
    restored state (deterministic, so it equals `row['selected_ids']`)."""
    missing = getattr(on_round, "missing", None)
    need = missing is not None and bool(missing(row))
    if jax.process_count() > 1:   # acquisition is collective: all or none
        need = any(parallel.gather_bytes(b"1" if need else b""))
    if not need:
        return
    if not row["selected_ids"]:   # a round without acquisition: its training plot
        if on_round is not None:
            on_round(row, {"selection": None, "examples": None})
        return
    k = len(row["selected_ids"])
    sel, _ = acquire(config, d, n, state, method, labelled_N[:-k], row["round"])
    if [d.ids[i] for i in sel.indices] != row["selected_ids"]:
        log(f"warning: [{method} seed {config.seed}] round {row['round']}: the recomputed "
            "selection differs from the recorded one; its score plot is not regenerated")
        sel = None
    if on_round is not None:
        log(f"[{method} seed {config.seed}] regenerating the plots of round {row['round']}")
        on_round(row, {"selection": sel,
                       "examples": selected_examples(config, d, n, state, labelled_N[-k:])})
