"""Every name a sweep gives a file or directory of its run directory, and who writes each.

A run directory (``out_dir``, local or ``s3://``)::

    config.yaml            the resolved config (plumbing.cli), read back by resume=
    driver.lock            the one driver's lock (plumbing.run_lock; local run dirs only)
    space.json             the search space (sweep.run)
    study.db               the searcher's Optuna study (sweep.searcher), read by the record and optuna-dashboard
    scheduler_stops.jsonl  one line per trial ASHA stopped (sweep.scheduler)
    timings.json           when each phase started and ended (sweep.stages)
    stage2_space.json      the narrowed space of the second stage (sweep.stages)
    summary.json, trials.parquet, *.png, best_checkpoint/    the record (sweep.report, sweep.plots)
    search/ stage2/ retrain/                                 one Tune experiment per stage
        experiment_state-*.json, searcher-state-*.pkl, ...   Tune's own (read through sweep.trials)
        trial_<n>_<id>/    one trial (Tune's params.json, result.json, progress.csv), with
            trial_params.json   its params, written by its driver before training (sweep.driver)
            trial_done.json     its last result, once it finished (sweep.driver): reported again, not retrained
            driver_error.json   what its driver raised, for a retried driver (sweep.driver)
            error.txt           Tune's record of the trial's error
            train/              its Ray Train run's checkpoints (a worker-group trial)
            metrics.json, checkpoint*/, tb/   the training loop's (trainable.session, trainable.tensorboard)
"""

from __future__ import annotations

# the Tune experiments (stages) of a run directory, each a directory of it
STAGE1, STAGE2, RETRAIN = "search", "stage2", "retrain"
SEARCH_STAGES = (STAGE1, STAGE2)

# the run directory's own files
SPACE_FILE = "space.json"
STUDY_FILE = "study.db"
STOPS_FILE = "scheduler_stops.jsonl"
TIMINGS_FILE = "timings.json"
STAGE2_SPACE_FILE = "stage2_space.json"
SUMMARY_FILE = "summary.json"
TRIALS_FILE = "trials.parquet"
BEST_CHECKPOINT = "best_checkpoint"
ARTIFACT_DIR = "mlartifacts"  # MLflow's artifacts beside a sqlite tracking store

# a trial directory's files, besides Tune's and the training loop's
PARAMS_FILE = "trial_params.json"  # the driver's copy of the trial's params, written where the trial lives
DONE_FILE = "trial_done.json"
FAILURE_FILE = "driver_error.json"  # what this trial's driver raised, in which sweep
ERROR_FILE = "error.txt"
TRAIN_RUN_NAME = "train"  # the trial's Ray Train run (its checkpoints), a directory of the trial
