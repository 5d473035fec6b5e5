//! `sinfo`: partition and node summaries over [`super::model::View`].
