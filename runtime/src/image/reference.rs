//! Image references (being written).
