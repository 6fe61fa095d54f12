//! The commands besides `run`: offline tools (`normalize`, `validate`, `schema`) and the
//! client of a running sidecar's admin API (`dead-letters`).

pub(crate) mod dead_letters;
pub(crate) mod normalize;
pub(crate) mod validate;
