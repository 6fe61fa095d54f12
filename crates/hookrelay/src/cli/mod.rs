//! The commands besides `run`: offline tools (`normalize`, `validate`, `schema`) and the
//! clients of a running sidecar's admin API (`dead-letters`, `deliveries`).

pub(crate) mod dead_letters;
pub(crate) mod deliveries;
pub(crate) mod normalize;
pub(crate) mod validate;
