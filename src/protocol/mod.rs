//! The v1 wire formats that face strangers: the register frame browsers send and the push
//! body pipelines POST. Both keep the old Go server's decoding rules exactly (see `fields`).

pub mod fields;
pub mod push;
pub mod register;
