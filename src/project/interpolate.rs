//! Load stage `interpolate` (being written).
