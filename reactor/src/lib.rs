//! reactor (in progress)
