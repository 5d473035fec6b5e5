//! `sacct`: accounting listings over [`super::model::View`].
