//! `sbatch`, `srun` and `salloc` option parsing: the command line, `#SBATCH` lines of the
//! script, `SBATCH_*` variables, with Slurm 22.05's precedence, texts and exit codes.
