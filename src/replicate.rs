//! `replicator run`: streaming the binlog into Redis.

use tokio_util::sync::CancellationToken;

use crate::app::Connected;
use crate::cli::RunArgs;
use crate::error::{Error, Result};
use crate::state::StateStore;

/// Streams binlog changes from the checkpoint until `shutdown`.
pub async fn stream(
    _c: &Connected,
    _state: &StateStore,
    _args: &RunArgs,
    _shutdown: CancellationToken,
) -> Result<()> {
    Err(Error::Config("streaming is not available yet".into()))
}
