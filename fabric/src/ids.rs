//! Dense typed indices into the topology arenas.
//!
//! Every entity of the topology lives in a `Vec` owned by [`crate::Topology`]; these newtypes are
//! indices into them. They are `Copy`, ordered, and only meaningful for the topology that made
//! them.

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub u32);

        impl $name {
            /// The index as a `usize`, for indexing arenas.
            #[inline]
            pub fn idx(self) -> usize {
                self.0 as usize
            }

            /// Builds an id from an arena index.
            #[inline]
            pub fn from_idx(idx: usize) -> Self {
                assert!(idx <= u32::MAX as usize);
                Self(idx as u32)
            }
        }
    };
}

id_type!(
    /// A site: one data centre in one jurisdiction.
    SiteId
);
id_type!(
    /// A spine switch group within a site.
    SpineId
);
id_type!(
    /// A leaf switch (a rack or a Slurm block) under a spine.
    LeafId
);
id_type!(
    /// An NVLink domain: one node, or several nodes sharing an NVLink fabric (e.g. NVL72).
    DomainId
);
id_type!(
    /// A compute node.
    NodeId
);
id_type!(
    /// A GPU, numbered globally; the GPUs of one node are contiguous.
    GpuId
);
id_type!(
    /// An interned GPU model (e.g. `H100`).
    ModelId
);
