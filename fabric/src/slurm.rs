//! Slurm import (in progress).
