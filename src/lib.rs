//! Change-data-capture from a MySQL/MariaDB user-session database to Redis.
//!
//! The contract with applications is the Redis model (`docs/redis-model.md`):
//! one hash per live session with its user, preferences and attributes
//! folded in, a TTL from `expires_at`, and a per-user index of sessions.
//!
//! - [`source`] reads MySQL: the prerequisite check, the consistent snapshot
//!   read, the binlog stream.
//! - [`state`] is the replicator's RocksDB copy of the four tables and its
//!   checkpoint.
//! - [`model`] is pure: rows and state in, Redis commands out.
//! - [`sink`] writes commands to Redis.
//! - [`snapshot`], [`replicate`] and [`verify`] are the three jobs.

pub mod app;
pub mod cli;
pub mod config;
pub mod error;
pub mod model;
pub mod position;
pub mod progress;
pub mod replicate;
pub mod sink;
pub mod snapshot;
pub mod source;
pub mod state;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod verify;

pub use error::{Error, Result};
