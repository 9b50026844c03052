//! Load stage `yaml` (being written).
