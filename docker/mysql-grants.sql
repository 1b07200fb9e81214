-- MySQL 8 only: the snapshot holds FLUSH TABLES WITH READ LOCK for a moment
-- to pin its binlog position, which needs RELOAD (see sql/grants.sql).
GRANT RELOAD ON *.* TO 'replicator'@'%';
