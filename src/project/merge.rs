//! Load stage `merge` (being written).
