//! Connecting: one URL of a standalone server or of a cluster node (told
//! apart with `CLUSTER INFO`), or several seed nodes of a cluster.

use std::path::Path;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Client;

use super::cluster::Cluster;
use super::{RedisSink, Topology};
use crate::config::redact_url;
use crate::error::{Error, Result};

impl RedisSink {
    /// Connects, and finds out whether the URL names a Redis Cluster node
    /// (or `url` lists several seed nodes, comma-separated): then every
    /// write goes through the cluster client.
    /// `ca`: PEM file of the CA of the server's certificate, for `rediss://`.
    pub async fn connect(url: &str, ca: Option<&Path>) -> Result<Self> {
        let ca = read_ca(ca)?;
        let seeds = seed_urls(url);
        let redacted_url = seeds
            .iter()
            .map(|s| redact_url(s))
            .collect::<Vec<_>>()
            .join(",");
        if seeds.len() > 1 {
            return Self::connect_cluster(&seeds, ca, redacted_url).await;
        }
        let connect_err = |source| Error::RedisConnect {
            url: redacted_url.clone(),
            source,
        };
        let client = match &ca {
            None => Client::open(url).map_err(connect_err)?,
            Some(ca) => {
                let certs = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.clone()),
                };
                Client::build_with_tls(url, certs).map_err(connect_err)?
            }
        };
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_number_of_retries(2);
        let mut conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(connect_err)?;
        redis::cmd("PING")
            .query_async::<()>(&mut conn)
            .await
            .map_err(connect_err)?;
        // A standalone server refuses CLUSTER INFO ("cluster support
        // disabled"), as does an ACL without it: both are standalone here.
        let cluster = redis::cmd("CLUSTER")
            .arg("INFO")
            .query_async::<String>(&mut conn)
            .await;
        if let Ok(info) = cluster {
            drop(conn);
            cluster_up(&info, &redacted_url)?;
            return Self::connect_cluster(&seeds, ca, redacted_url).await;
        }
        Ok(RedisSink {
            topology: Topology::Standalone(conn),
            redacted_url,
            wait: None,
        })
    }

    async fn connect_cluster(
        seeds: &[String],
        ca: Option<Vec<u8>>,
        redacted_url: String,
    ) -> Result<Self> {
        let connect_err = |source: redis::RedisError| {
            let not_cluster = source.to_string().contains("cluster support disabled");
            match not_cluster {
                true => Error::Config(format!(
                    "REDIS_URL {redacted_url} lists several nodes, but they are not nodes of a \
                     Redis Cluster (cluster support disabled): give one URL for a standalone \
                     Redis, or the nodes of a cluster"
                )),
                false => Error::RedisConnect {
                    url: redacted_url.clone(),
                    source,
                },
            }
        };
        let cluster = Cluster::connect(seeds, ca).await.map_err(connect_err)?;
        let info = cluster
            .ask_a_master(redis::cmd("CLUSTER").arg("INFO").take())
            .await
            .map_err(connect_err)?;
        let info: String = redis::from_redis_value(info).map_err(|e| connect_err(e.into()))?;
        cluster_up(&info, &redacted_url)?;
        tracing::info!(url = %redacted_url, "Redis Cluster: writing each hash slot's commands to its master");
        Ok(RedisSink {
            topology: Topology::Cluster(cluster),
            redacted_url,
            wait: None,
        })
    }
}

/// Refuses a cluster whose `CLUSTER INFO` says it is down: writes would
/// only meet `CLUSTERDOWN`.
fn cluster_up(info: &str, redacted_url: &str) -> Result<()> {
    let state = info
        .lines()
        .find_map(|l| l.trim().strip_prefix("cluster_state:"))
        .unwrap_or("unknown");
    if state == "ok" {
        return Ok(());
    }
    Err(Error::Config(format!(
        "the Redis Cluster at {redacted_url} is down (cluster_state:{state}): some hash slots \
         have no reachable master, or the node is not part of a formed cluster. Bring its \
         masters back (`redis-cli --cluster check` tells which slots), then start again"
    )))
}

/// The seed URLs of `REDIS_URL`: one, or several separated by commas. A
/// seed without a scheme takes the first one's scheme and credentials
/// (`rediss://user:pw@a:7000,b:7001`).
fn seed_urls(url: &str) -> Vec<String> {
    let mut parts = url.split(',').map(str::trim).filter(|s| !s.is_empty());
    let Some(first) = parts.next() else {
        return vec![url.to_string()];
    };
    let base = match first.find("://") {
        Some(i) => {
            let rest = &first[i + 3..];
            let userinfo = rest.rfind('@').map(|at| &rest[..=at]).unwrap_or("");
            format!("{}{userinfo}", &first[..i + 3])
        }
        None => String::new(),
    };
    std::iter::once(first.to_string())
        .chain(parts.map(|p| match p.contains("://") {
            true => p.to_string(),
            false => format!("{base}{p}"),
        }))
        .collect()
}

fn read_ca(ca: Option<&Path>) -> Result<Option<Vec<u8>>> {
    ca.map(|ca| {
        std::fs::read(ca).map_err(|e| {
            Error::Config(format!(
                "cannot read the Redis CA file {}: {e}",
                ca.display()
            ))
        })
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::seed_urls;

    #[test]
    fn seeds_inherit_the_first_ones_scheme_and_credentials() {
        assert_eq!(seed_urls("redis://a:1"), vec!["redis://a:1"]);
        assert_eq!(
            seed_urls("rediss://u:p@a:1, b:2,redis://c:3"),
            vec!["rediss://u:p@a:1", "rediss://u:p@b:2", "redis://c:3"]
        );
    }
}
