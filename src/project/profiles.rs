//! Load stage `profiles` (being written).
