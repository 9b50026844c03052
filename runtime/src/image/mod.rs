//! Images: references, the content-addressed store, layer unpacking, archives.

pub mod reference;
pub mod unpack;
