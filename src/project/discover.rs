//! Load stage `discover` (being written).
