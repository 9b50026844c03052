//! Images: references, the content-addressed store, layer unpacking, archives.

pub mod archive;
pub mod import;
pub mod reference;
pub mod registry;
pub mod store;
pub mod unpack;
