//! `scontrol show job|node|partition` in Slurm's key=value layout over [`super::model::View`].
