//! Load stage `include` (being written).
