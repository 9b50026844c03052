//! Load stage `validate` (being written).
