//! Load stage `extends` (being written).
