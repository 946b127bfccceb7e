//! The dashboard pages about configuration: rules (and trying a rule against stored
//! history), plugins and sources.
