//! Slurm's time formats: parsing `-t`/`--time` and `--begin`, and printing durations and
//! timestamps as `squeue`, `sacct` and `scontrol` do.
