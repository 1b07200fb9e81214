-- A least-privilege account for the replicator.
--
-- Replace the password and the database name (`sessions`) with yours, and
-- the host ('%') with the replicator's address where you can.
--
-- What each privilege is for:
--   SELECT on the database     the snapshot's consistent read, `verify`, and the
--                              list of tables in the prerequisite check
--   REPLICATION SLAVE          reading the binlog stream
--   REPLICATION CLIENT         the binary log position and status
--                              (MariaDB 10.5+ names it BINLOG MONITOR; the old
--                              name is accepted as an alias)
-- MySQL 8 also needs RELOAD, for the brief FLUSH TABLES WITH READ LOCK that
-- pins the snapshot's binlog position (MariaDB reads it lock-free):
--   GRANT RELOAD ON *.* TO 'replicator'@'%';
-- (MySQL 8.4 calls the slave/client privileges by the same names.)

CREATE USER IF NOT EXISTS 'replicator'@'%' IDENTIFIED BY 'change-me';
GRANT SELECT ON `sessions`.* TO 'replicator'@'%';
GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'replicator'@'%';
