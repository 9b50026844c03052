//! Load stage `normalize` (being written).
