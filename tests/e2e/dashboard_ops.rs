//! The dashboard pages that act on operations: the overview and the dead letters.
