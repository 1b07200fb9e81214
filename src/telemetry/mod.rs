//! What operators see: Prometheus metrics, `/healthz` and `/readyz`.
//!
//! The metric names live in [`metrics`](self::names) in one place, with their
//! meaning; the pipeline records through the functions there. Without
//! [`serve`], recording costs next to nothing and goes nowhere (tests, the
//! library used alone).

mod health;
mod names;
mod server;

pub use health::Health;
pub use names::*;
pub use server::serve;
