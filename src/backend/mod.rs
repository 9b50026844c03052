//! Engines that run a Compose project's containers, behind one interface.

pub mod translate;
