"""The AL simulator's command line: `python -m experiments.al --dataset=lsp --method=vl4pose` runs
whole paper protocols (train → evaluate → score the pool → select → label, per round) for one or
more methods and seeds, checkpointing every round with Orbax in `--workdir` so that rerunning the
same command resumes exactly. Flags left unset take the protocol of the chosen dataset
(`protocol.PROTOCOLS`; `--protocol=cke` picks the Bayesian DeepPrior / CKE paper's on a hand dataset;
the training of earlier versions is `--lr_schedule=constant --optimizer_state=carried
--noselect_best`); the quick CPU run is `--dataset=synthetic_human --method=vl4pose,random
--preset=tiny`. Every check
that needs no training (names, prepared data, budget vs pool) runs first and exits non-zero with
a one-paragraph message. Results: `WORKDIR/results.jsonl`; tables: `python -m experiments.report`.
A second launch on a workdir in use is refused (exit 1, naming the holder); SIGTERM and Ctrl-C
save a checkpoint at the next training step and exit with 143 and 130 (rerun to resume); I/O
failures (disk full, read-only storage) exit 1 with one paragraph.

Several hosts: start the same command on every host with `--distributed` (or
VL4POSE_DISTRIBUTED=1) and a shared `--workdir`; `--coordinator_address`, `--num_processes` and
`--process_id` are needed only where JAX cannot detect them (it detects Slurm, Open MPI and
Cloud TPU). Training then spans every device of every host and pool scoring is shared.
"""
from __future__ import annotations

import errno
import os
import sys

import jax
from absl import app, flags, logging

from experiments import report
from vl4pose_jax import acquisition, data, parallel, preemption, protocol, records, simulate
from vl4pose_jax import workdir as wd

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "synthetic_human", "Dataset: " + ", ".join(sorted(data.SPECS)))
flags.DEFINE_list("method", ["vl4pose"], "Acquisition method(s), comma-separated: "
                  + ", ".join(acquisition.names()))
flags.DEFINE_string("protocol", None, "Protocol whose defaults fill unset flags: "
                    + ", ".join(protocol.PROTOCOLS) + " (default: the dataset's own, else its kind's: "
                    "lsp for people, icvl for hands).")
flags.DEFINE_string("workdir", None, "Output and checkpoint folder (default: "
                    "runs/<dataset>_<methods>). Rerun the same command on it to resume.")
flags.DEFINE_integer("seed", 0, "First seed; seeds seed..seed+trials-1 are run.")
flags.DEFINE_integer("trials", 1, "Number of seeds.")
flags.DEFINE_integer("init_size", None, "Initial labelled images (protocol default).")
flags.DEFINE_integer("budget", None, "Images selected per round (protocol default).")
flags.DEFINE_integer("rounds", None, "Acquisition rounds (protocol default); rounds+1 trainings.")
flags.DEFINE_integer("epochs", None, "Training epochs of the first round (protocol default).")
flags.DEFINE_integer("cycle_epochs", None, "Training epochs of later rounds (protocol default).")
flags.DEFINE_enum("retrain", None, ["scratch", "finetune"], "Re-initialise every round or "
                  "warm-start from the previous one (protocol default).")
flags.DEFINE_enum("preset", None, sorted(protocol.HUMAN_PRESETS), "Network size: 'tiny' for "
                  "CPU minutes, 'paper' for the published configuration (protocol default). "
                  "Hands (DeepPrior): the crop is 128 px, except 'small' 64 px and 'micro' 32 px.")
flags.DEFINE_string("data_dir", None, "TFDS data directory (default: $VL4POSE_DATA_DIR or "
                    "~/tensorflow_datasets).")
flags.DEFINE_string("data_config", None, "Dataset config (synthetic sets: tiny, small, default).")
flags.DEFINE_integer("batch_size", None, "Batch size (protocol default).")
flags.DEFINE_bool("share_round0", True, "Train round 0 once for the methods of a seed that "
                  "train the same network (the results equal separate trainings; "
                  "--noshare_round0 trains each alone).")
flags.DEFINE_integer("min_steps", None, "Each training runs at least this many optimizer steps "
                     "(protocol default; for small labelled sets at a large batch).")
flags.DEFINE_float("lr", None, "Adam learning rate (default: 3e-4 hourglass, 1e-3 DeepPrior, "
                   "3e-3 on synthetic_human).")
flags.DEFINE_enum("lr_schedule", None, list(protocol.LR_SCHEDULES), "Pose learning rate within "
                  "a round (protocol default): 'constant'; 'plateau', the VL4Pose reference's "
                  "ReduceLROnPlateau (halved after 5 epochs without a lower validation pose "
                  "loss, cooldown 2, at least 3e-6), restarted every round; 'cosine', to 0.01x "
                  "over the round's steps. The auxiliary net's rate stays fixed.")
flags.DEFINE_enum("optimizer_state", None, list(protocol.OPTIMIZER_STATES), "Adam's state in a "
                  "warm-started round (protocol default): 'carried' from the previous round or "
                  "'fresh' (the reference).")
flags.DEFINE_bool("select_best", None, "End every round's training with the epoch's state of "
                  "lowest validation pose loss (evaluated, scored, checkpointed, fine-tuned "
                  "next; protocol default). Needs the dataset's validation split.")
flags.DEFINE_integer("early_stopping", None, "Stop a round's training after this many epochs "
                     "without a lower validation pose loss (0: never; protocol default).")
flags.DEFINE_integer("checkpoint_every", 10, "Epochs between mid-training checkpoints (0: only "
                     "at the end of each round).")
flags.DEFINE_float("pre_subset", None, "Score only a random fraction in (0, 1] or a whole count "
                   "(at least --budget) of the pool each round (protocol default).")
flags.DEFINE_enum("precision", "float32", ["float32", "bfloat16"], "Compute dtype of the "
                  "networks: 'bfloat16' computes in bfloat16 with float32 parameters and losses "
                  "(for GPU/TPU); 'float32' (default) everywhere else. Part of the run's identity.")
flags.DEFINE_string("compilation_cache", "default", "Persistent XLA compilation cache folder, so "
                    "a resumed or repeated run does not compile again ('default': "
                    "WORKDIR/compilation_cache; '' disables it).")
flags.DEFINE_integer("num_workers", 0, "grain worker processes decoding images for training, "
                     "evaluation and scoring (0: the main process). Part of the run's identity: grain "
                     "splits the records among workers, which changes the order of training "
                     "batches.")
flags.DEFINE_bool("distributed", os.environ.get("VL4POSE_DISTRIBUTED", "") in ("1", "true"),
                  "Join a multi-process run (jax.distributed.initialize) before anything else; "
                  "default from $VL4POSE_DISTRIBUTED.")
flags.DEFINE_string("coordinator_address", None, "--distributed: host:port of process 0 "
                    "(default: detected by JAX, or $JAX_COORDINATOR_ADDRESS).")
flags.DEFINE_integer("num_processes", None, "--distributed: number of processes (default: "
                     "detected by JAX).")
flags.DEFINE_integer("process_id", None, "--distributed: this process's index, 0 .. "
                     "num_processes - 1 (default: detected by JAX).")
flags.DEFINE_bool("bayesian_deepprior", False, "Hands: train Bayesian DeepPrior (MC dropout, "
                  "aleatoric head; evaluated as the MC mean) for every method, not only for "
                  "mc_dropout and cke, e.g. for a random baseline on the same model.")
flags.DEFINE_string("init_from", None, "Start round 0 from the newest trained state of this "
                    "workdir (same method and dataset) instead of a fresh initialisation: "
                    "fine-tuning after merging new labels. Its dataset, method(s), preset and "
                    "data directory are read from that workdir for the flags left unset (a "
                    "contradicting flag is refused). Round 0 then trains --cycle_epochs (the "
                    "fine-tuning schedule), not --epochs. Part of the run's identity.")
flags.DEFINE_multi_string("method_options", [], "Options of a method's `select`, "
                          "METHOD:KEY=VALUE[,KEY=VALUE] (repeat the flag for several methods), "
                          "e.g. --method_options=vl4pose:num_peaks=5,mode=expected. Part of the "
                          "run's identity.")
flags.DEFINE_string("crash_at", None, "Testing only: 'round:R' aborts after round R's "
                    "checkpoint, 'train:R:S' after the mid-training checkpoint at step S of round "
                    "R, to exercise resume.")


# What --init_from carries over from the source run when neither a flag nor --protocol says
# otherwise: its fine-tuning schedule (round 0 of a fine-tune trains cycle_epochs).
CARRIED = ("cycle_epochs", "retrain", "batch_size", "lr", "lr_schedule", "optimizer_state",
           "min_steps", "select_best", "early_stopping")


def config_from_flags(source: dict | None = None) -> protocol.Config:
    """The run's `Config`: the flags given, the protocol's values for those left unset; with
    `source` (`init_from_settings`), its dataset, method, data directory and preset fill the
    flags left unset, and (without --protocol) its schedule (`CARRIED`)."""
    source = source or {}
    fields = {name: getattr(FLAGS, name) for name in protocol.PROTOCOL_FIELDS}
    if "preset" in source and not FLAGS["preset"].present:
        fields["preset"] = source["preset"]
    if FLAGS.protocol is None:   # the source's training schedule, for the flags left unset
        for name in CARRIED:
            if name in source and not FLAGS[name].present:
                fields[name] = source[name]
    dataset = source.get("dataset", FLAGS.dataset)
    methods = FLAGS.method if FLAGS["method"].present else source.get("methods", FLAGS.method)
    data_dir = FLAGS.data_dir if FLAGS.data_dir is not None else source.get("data_dir")
    return protocol.make_config(
        dataset, methods, protocol=FLAGS.protocol, seed=FLAGS.seed,
        trials=FLAGS.trials, data_dir=data_dir, checkpoint_every=FLAGS.checkpoint_every,
        crash_at=FLAGS.crash_at, precision=FLAGS.precision, num_workers=FLAGS.num_workers,
        share_round0=FLAGS.share_round0, init_from=FLAGS.init_from,
        bayesian_deepprior=FLAGS.bayesian_deepprior,
        method_options=protocol.parse_method_options(FLAGS.method_options, methods),
        **fields)


def init_from_settings(source_workdir) -> dict:
    """What the run `--init_from` names remembers (`workdir.load_config`, `recorded_data`):
    its dataset, methods, preset and data directory, for the flags left unset. A flag given
    that contradicts it (another dataset, preset or method; a --data_dir whose dataset has
    other joints or tree) is refused in one paragraph (SimulationError), before any work."""
    source = wd.load_config(source_workdir)
    record = wd.recorded_data(source_workdir) or {}
    given = {name: FLAGS[name].present for name in ("dataset", "preset", "method")}
    clash = []
    if given["dataset"] and FLAGS.dataset != source.dataset:
        clash.append(f"--dataset={FLAGS.dataset} (it trained on {source.dataset})")
    if given["preset"] and FLAGS.preset != source.preset:
        clash.append(f"--preset={FLAGS.preset} (its network is {source.preset!r})")
    if given["method"] and not set(FLAGS.method) <= set(source.methods):
        clash.append(f"--method={','.join(FLAGS.method)} (it trained "
                     f"{', '.join(source.methods)})")
    data_dir = record.get("data_dir")
    if FLAGS.data_dir is not None and record.get("skeleton"):
        mine = wd.skeleton_record(source.dataset, FLAGS.data_dir)
        if mine != record["skeleton"]:
            clash.append(f"--data_dir={FLAGS.data_dir} (its {source.dataset} has "
                         + ("no prepared dataset" if mine is None else "other joints or tree")
                         + f" than the one the run trained on, in {data_dir})")
    if clash:
        raise protocol.SimulationError(
            f"--init_from={source_workdir} fine-tunes that run's weights, but "
            + "; ".join(clash) + ". Leave these flags out (they are read from the run: "
            f"{wd.CONFIG_FILE} and {wd.DATA_FILE}) or start a new run without --init_from.")
    out = {"dataset": source.dataset, "methods": list(source.methods), "preset": source.preset,
           **{name: getattr(source, name) for name in CARRIED}}
    if data_dir is not None:
        out["data_dir"] = data_dir
    return out


def io_message(err: OSError, workdir) -> str:
    """One paragraph for an I/O failure during a run (disk full, storage gone read-only)."""
    where = f" ({err.filename})" if getattr(err, "filename", None) else ""
    hint = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
            errno.EROFS: "the storage is read-only"}.get(err.errno, "")
    return (f"writing the run's files failed{where}: {err.strerror or err}"
            + (f" ({hint})" if hint else "") + f". The checkpoints in {workdir} up to the last "
            "finished one are intact; make room (or fix the storage) and rerun the same command "
            "to resume.")


def scored_summary(rows) -> str:
    """'pool records scored per round' per method and seed, when the rows record it."""
    parts = []
    for r in rows:
        if r.get("num_scored") is not None:
            parts.append(f"{r['method']} seed {r['seed']} round {r['round']}: {r['num_scored']}")
    return ("pool records scored per round: " + "; ".join(parts)) if parts else ""


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)   # Orbax logs every save at INFO
    if FLAGS.distributed:
        parallel.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes,
                                        FLAGS.process_id)
    elif FLAGS.num_processes or FLAGS.process_id is not None or FLAGS.coordinator_address:
        raise app.UsageError("--coordinator_address, --num_processes and --process_id need "
                             "--distributed")
    workdir = FLAGS.workdir or f"runs/{FLAGS.dataset}_{'_'.join(FLAGS.method)}"
    cache = (f"{workdir}/compilation_cache" if FLAGS.compilation_cache == "default"
             else FLAGS.compilation_cache)
    if cache:
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    preemption.install()
    try:
        config = config_from_flags(init_from_settings(FLAGS.init_from) if FLAGS.init_from
                                   else None)
        with wd.lock(workdir):   # before the data: a refused launch fails at once
            d = records.validate(config)
            wd.record_data(workdir, config)
            simulate.run(config, workdir, data_=d, on_round=report.round_plotter(workdir))
            if not parallel.is_primary():
                return
            summary = report.write_summary([workdir], workdir)
    except protocol.SimulationError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    except preemption.Interrupted as err:
        print(err, file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        print("interrupted again: stopped at once; rerun the same command to resume from the "
              "last checkpoint.", file=sys.stderr)
        sys.exit(130)
    except OSError as err:
        print(f"error: {io_message(err, workdir)}", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)   # now: Orbax's writer threads would print their failures while exiting
    print(summary)
    scored = scored_summary(report.read_rows([workdir]))
    if scored:
        print(scored)
    print(f"results: {workdir}/{wd.RESULT_FILE}; table and learning curve: "
          f"{workdir}/report.md, report.csv, learning_curve.png; per-round plots: {workdir}/plots")


if __name__ == "__main__":
    app.run(main)
