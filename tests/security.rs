//! Security: TLS to MySQL and Redis, a least-privilege Redis ACL user,
//! secrets kept out of every output, and an owner-only state directory.

mod common;

use std::time::Duration;

use common::servers::{free_port, PrivateServices};
use common::tls::Certs;
use common::{stderr, stdout, TestDb};
use redis::AsyncCommands;

const FIXTURE: &str = "
INSERT INTO users (user_id, username, email, password_hash) VALUES (1, 'ann', 'ann@x', 'h');
INSERT INTO user_sessions (session_id, user_id, created_at, expires_at) VALUES ('s1', 1, NOW(), NOW() + INTERVAL 1 DAY);
";

#[tokio::test]
async fn mysql_over_tls_in_every_mode() {
    let certs = Certs::generate("mysql");
    let mariadb = PrivateServices::mariadb(&format!(
        "--ssl-ca={} --ssl-cert={} --ssl-key={}",
        certs.ca.display(),
        certs.cert.display(),
        certs.key.display()
    ));
    let db = TestDb::on(mariadb.servers(), "mysql_tls").await;
    db.sql(FIXTURE).await;
    // The account may only connect over TLS: a success proves TLS was used.
    db.sql("ALTER USER 'replicator'@'127.0.0.1' REQUIRE SSL")
        .await;
    let ca = certs.ca.to_str().unwrap();
    for mode in [
        vec!["--mysql-ssl-mode", "required"],
        vec!["--mysql-ssl-mode", "preferred"],
        vec!["--mysql-ssl-mode", "verify-ca", "--mysql-ssl-ca", ca],
        vec!["--mysql-ssl-mode", "verify-identity", "--mysql-ssl-ca", ca],
    ] {
        let mut args = vec!["run", "--exit-when-caught-up"];
        args.extend(&mode);
        db.run_ok(&args).await;
        db.sql(&format!(
            "UPDATE users SET username = '{}' WHERE user_id = 1",
            mode[1]
        ))
        .await;
    }
    db.catch_up_with(&["--mysql-ssl-mode", "required"]).await;
    assert_eq!(
        db.field("s1", "username").await.as_deref(),
        Some("verify-identity")
    );

    // Without TLS the account is refused; a CA that did not sign the certificate is refused.
    let out = db.run(&["snapshot", "--mysql-ssl-mode", "disabled"]).await;
    assert!(
        !out.status.success() && stderr(&out).contains("refused the account"),
        "{}",
        stderr(&out)
    );
    let other = certs.other_ca();
    let out = db
        .run(&[
            "snapshot",
            "--mysql-ssl-mode",
            "verify-ca",
            "--mysql-ssl-ca",
            other.to_str().unwrap(),
        ])
        .await;
    assert!(!out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot connect to MySQL"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn mysql_tls_required_refuses_a_server_without_tls() {
    let db = TestDb::new("mysql_no_tls").await;
    let out = db.run(&["snapshot", "--mysql-ssl-mode", "required"]).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot connect to MySQL") && err.contains("SSL"),
        "{err}"
    );
    // preferred (the default) falls back to a plain connection.
    db.run_ok(&["snapshot"]).await;
}

/// A Redis that only speaks TLS, stopped when dropped.
struct TlsRedis {
    child: std::process::Child,
    port: u16,
}

impl TlsRedis {
    fn start(certs: &Certs) -> TlsRedis {
        let port = free_port();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .arg("--tls-cert-file")
            .arg(&certs.cert)
            .arg("--tls-key-file")
            .arg(&certs.key)
            .arg("--tls-ca-cert-file")
            .arg(&certs.ca)
            .args([
                "--tls-auth-clients",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
            ])
            .arg(&certs.dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs");
        TlsRedis { child, port }
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn redis_over_tls_with_a_private_ca() {
    let certs = Certs::generate("redis");
    let redis = TlsRedis::start(&certs);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", redis.port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "TLS Redis did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let db = TestDb::new("redis_tls").await;
    db.sql(FIXTURE).await;
    let url = format!("rediss://127.0.0.1:{}/0", redis.port);
    let ca = certs.ca.to_str().unwrap();
    for args in [vec!["snapshot"], vec!["verify"]] {
        db.run_ok_with(&args, &[("REDIS_URL", &url), ("REDIS_CA", ca)])
            .await;
    }
    // The same server without its CA: the certificate is not trusted.
    let out = db.run_with(&["verify"], &[("REDIS_URL", &url)]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot connect to Redis at rediss://"),
        "{}",
        stderr(&out)
    );
}

/// Creates a Redis ACL user with `password`, limited to `keys` (a pattern).
async fn acl_user(db: &TestDb, user: &str, password: &str, keys: &str) {
    let () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(user)
        .arg("reset")
        .arg("on")
        .arg(format!(">{password}"))
        .arg(format!("~{keys}"))
        .arg("+@all")
        .arg("-@dangerous")
        .query_async(&mut db.redis())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_redis_acl_user_limited_to_the_namespace_is_enough() {
    let db = TestDb::new("redis_acl").await;
    db.sql(FIXTURE).await;
    let user = format!("acl{}", db.server_id);
    let mut r = db.redis();
    acl_user(&db, &user, "acl-secret", &format!("{}*", db.prefix)).await;
    let port = url::Url::parse(&db.servers.redis_url)
        .unwrap()
        .port()
        .unwrap();
    let url = format!("redis://{user}:acl-secret@127.0.0.1:{port}/0");
    for args in [vec!["run", "--exit-when-caught-up"], vec!["verify"]] {
        db.run_ok_with(&args, &[("REDIS_URL", &url)]).await;
    }
    db.sql("UPDATE users SET username = 'acl' WHERE user_id = 1")
        .await;
    db.run_ok_with(&["run", "--exit-when-caught-up"], &[("REDIS_URL", &url)])
        .await;
    assert_eq!(db.field("s1", "username").await.as_deref(), Some("acl"));
    // The ACL holds: the user cannot write outside the namespace.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut limited = client.get_multiplexed_async_connection().await.unwrap();
    let denied: redis::RedisResult<()> = limited.set("outside-the-namespace", "x").await;
    assert!(denied.is_err());
    let () = redis::cmd("ACL")
        .arg("DELUSER")
        .arg(&user)
        .query_async(&mut r)
        .await
        .unwrap();
}

#[tokio::test]
async fn no_password_appears_in_any_output() {
    let db = TestDb::new("secrets").await;
    db.sql(FIXTURE).await;
    let (mysql_pw, redis_pw) = ("Mysql-Pass-9f3a", "Redis-Pass-41bc");
    let user = format!("sec{}", db.server_id);
    db.sql(&format!(
        "CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{mysql_pw}';
         GRANT SELECT ON `{db}`.* TO '{user}'@'127.0.0.1';
         GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{user}'@'127.0.0.1';",
        db = db.name
    ))
    .await;
    let mut r = db.redis();
    acl_user(&db, &user, redis_pw, "*").await;
    let mysql_port = url::Url::parse(&db.mysql_url()).unwrap().port().unwrap();
    let redis_port = url::Url::parse(&db.servers.redis_url)
        .unwrap()
        .port()
        .unwrap();
    let mysql_url = format!(
        "mysql://{user}:{mysql_pw}@127.0.0.1:{mysql_port}/{}",
        db.name
    );
    let redis_url = format!("redis://{user}:{redis_pw}@127.0.0.1:{redis_port}/0");
    let mut seen = String::new();
    let runs: Vec<(Vec<&str>, String, String)> = vec![
        (vec!["snapshot"], mysql_url.clone(), redis_url.clone()),
        (
            vec!["run", "--exit-when-caught-up"],
            mysql_url.clone(),
            redis_url.clone(),
        ),
        (
            vec!["verify", "--json"],
            mysql_url.clone(),
            redis_url.clone(),
        ),
        (vec!["status"], mysql_url.clone(), redis_url.clone()),
        (vec!["run", "--help"], mysql_url.clone(), redis_url.clone()),
        (
            vec!["snapshot", "--log-format", "json"],
            mysql_url.clone(),
            redis_url.clone(),
        ),
        // Failures: a wrong Redis password, an unreachable MySQL.
        (
            vec!["snapshot"],
            mysql_url.clone(),
            redis_url.replace(redis_pw, &format!("{redis_pw}-x")),
        ),
        (
            vec!["verify"],
            mysql_url.replace(&mysql_port.to_string(), "1"),
            redis_url.clone(),
        ),
    ];
    for (args, mysql, redis) in runs {
        let env = [
            ("MYSQL_URL", mysql.as_str()),
            ("REDIS_URL", redis.as_str()),
            ("RUST_LOG", "debug"),
        ];
        let out = db.run_with(&args, &env).await;
        seen += &stdout(&out);
        seen += &stderr(&out);
    }
    assert!(seen.contains("***"), "redacted URLs are shown: {seen}");
    for secret in [mysql_pw, redis_pw] {
        assert!(!seen.contains(secret), "{secret} appears in:\n{seen}");
    }
    db.sql(&format!("DROP USER '{user}'@'127.0.0.1'")).await;
    let () = redis::cmd("ACL")
        .arg("DELUSER")
        .arg(&user)
        .query_async(&mut r)
        .await
        .unwrap();
}

#[cfg(unix)]
#[tokio::test]
async fn the_state_dir_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let db = TestDb::new("state_perms").await;
    db.run_ok(&["snapshot"]).await;
    let mode = std::fs::metadata(&db.state_dir)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "{mode:o}");
}
