//! Engines that run a Compose project's containers, behind one interface.

pub mod native;
pub mod translate;
