//! FLV: the muxer the media server uses ([`mux`]), the H.264 helpers it needs ([`avc`]),
//! decoding-timestamp recovery for streams with B-frames ([`dts`]), and an incremental reader
//! for viewers ([`reader`]).

pub mod avc;
pub mod dts;
pub mod mux;
pub mod reader;

pub use mux::{Tag, TagKind};
pub use reader::{FlvReader, ReadTag};
