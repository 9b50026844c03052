//! Load stage `canonical` (being written).
