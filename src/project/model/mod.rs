//! The typed canonical Compose model (being written).
