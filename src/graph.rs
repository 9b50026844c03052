//! The service dependency graph (being written).
