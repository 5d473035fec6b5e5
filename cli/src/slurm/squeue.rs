//! `squeue`: options, filters, and the `-o`/`-O` format engines over [`super::model::View`].
