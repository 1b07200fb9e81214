//! A seeded random workload over the four tables: every kind of change the
//! model covers, with foreign keys as MySQL enforces them. The same seed
//! gives the same statements.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Users 1..=USERS, sessions s1..=SESSIONS are the ids the workload plays with.
const USERS: u32 = 30;
const SESSIONS: u32 = 80;

pub struct Workload {
    rng: StdRng,
}

impl Workload {
    pub fn new(seed: u64) -> Self {
        Workload {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// SQL that creates the starting rows, and a user (1000) with a live
    /// session (`watch`) that the random statements never touch: tests
    /// change it and wait to see the change in Redis.
    pub fn initial(&mut self) -> String {
        let mut sql = String::from(
            "INSERT INTO users (user_id, username, email, password_hash) VALUES (1000, 'watcher', 'w@x', 'h');
             INSERT INTO user_sessions (session_id, user_id, created_at, expires_at)
               VALUES ('watch', 1000, NOW(), NOW() + INTERVAL 1 DAY);",
        );
        for u in 1..=USERS {
            sql += &format!(
                "INSERT INTO users (user_id, username, email, password_hash) VALUES ({u}, 'user{u}', 'u{u}@x', 'h');"
            );
            if u % 4 != 0 {
                sql +=
                    &format!("INSERT INTO user_preferences (user_id, theme) VALUES ({u}, 'dark');");
            }
        }
        for s in 1..=SESSIONS {
            let u = s % USERS + 1;
            let exp = self.expiry();
            sql += &format!(
                "INSERT INTO user_sessions (session_id, user_id, ip_address, created_at, expires_at) \
                 VALUES ('s{s}', {u}, '192.0.2.{s}', NOW(), {exp});
                 INSERT INTO session_data (session_id, attribute_key, attribute_value) VALUES ('s{s}', 'cart', '[{s}]');"
            );
        }
        sql
    }

    fn expiry(&mut self) -> String {
        if self.rng.random_bool(0.2) {
            format!("NOW() - INTERVAL {} MINUTE", self.rng.random_range(1..600))
        } else {
            format!("NOW() + INTERVAL {} MINUTE", self.rng.random_range(1..6000))
        }
    }

    fn user(&mut self) -> u32 {
        self.rng.random_range(1..=USERS + 5)
    }

    fn session(&mut self) -> u32 {
        self.rng.random_range(1..=SESSIONS + 10)
    }

    /// One transaction of a few random statements. Statements may fail on
    /// a foreign key or a duplicate key; the caller ignores such failures
    /// (the transaction is then rolled back, as an application's would be).
    pub fn transaction(&mut self) -> String {
        let n = self.rng.random_range(1..=4);
        let mut sql = String::from("START TRANSACTION;");
        for _ in 0..n {
            sql += &self.statement();
        }
        sql + "COMMIT;"
    }

    /// A transaction of `rows` session_data rows for one session.
    pub fn large_transaction(&mut self, rows: u32) -> String {
        let s = self.session();
        let tag = self.rng.random_range(0..1_000_000);
        format!(
            "START TRANSACTION;
             INSERT IGNORE INTO session_data (session_id, attribute_key, attribute_value)
               SELECT 's{s}', CONCAT('bulk{tag}_', seq), 'v' FROM seq_1_to_{rows}
               WHERE EXISTS (SELECT 1 FROM user_sessions WHERE session_id = 's{s}');
             UPDATE users SET email = CONCAT('bulk', {tag}, '@x') WHERE user_id = {u};
             COMMIT;",
            u = self.user()
        )
    }

    fn statement(&mut self) -> String {
        let (u, u2, s) = (self.user(), self.user(), self.session());
        let word = self.rng.random_range(0..10_000);
        let exp = self.expiry();
        match self.rng.random_range(0..16) {
            0 => format!(
                "INSERT INTO users (user_id, username, email, password_hash) VALUES ({u}, 'new{word}', 'n{word}@x', 'h') \
                 ON DUPLICATE KEY UPDATE username = 'dup{word}';"
            ),
            1 | 2 => format!("UPDATE users SET username = 'name{word}', email = 'e{word}@x' WHERE user_id = {u};"),
            3 => format!("DELETE FROM users WHERE user_id = {u};"),
            4 => format!(
                "INSERT INTO user_preferences (user_id, theme, language) VALUES ({u}, 't{word}', 'de') \
                 ON DUPLICATE KEY UPDATE theme = IF(RAND() < 0.3, NULL, 't{word}');"
            ),
            5 => format!("DELETE FROM user_preferences WHERE user_id = {u};"),
            6 => format!(
                "INSERT INTO user_sessions (session_id, user_id, created_at, expires_at) VALUES ('s{s}', {u}, NOW(), {exp}) \
                 ON DUPLICATE KEY UPDATE user_agent = 'ua{word}';"
            ),
            7 => format!("UPDATE user_sessions SET ip_address = IF(RAND() < 0.5, NULL, '198.51.100.{}'), last_activity_at = NOW() WHERE session_id = 's{s}';", word % 250),
            8 => format!("UPDATE user_sessions SET expires_at = {exp} WHERE session_id = 's{s}';"),
            9 => format!("UPDATE user_sessions SET user_id = {u2} WHERE session_id = 's{s}';"),
            10 => format!("DELETE FROM user_sessions WHERE session_id = 's{s}';"),
            11 | 12 => format!(
                "INSERT INTO session_data (session_id, attribute_key, attribute_value) VALUES ('s{s}', 'k{}', IF(RAND() < 0.2, NULL, 'v{word}')) \
                 ON DUPLICATE KEY UPDATE attribute_value = 'w{word}';",
                word % 5
            ),
            13 => format!("UPDATE session_data SET attribute_key = 'r{word}' WHERE session_id = 's{s}' AND attribute_key = 'k{}';", word % 5),
            14 => format!("DELETE FROM session_data WHERE session_id = 's{s}' AND attribute_key = 'k{}';", word % 5),
            _ => format!("UPDATE session_data SET session_id = 's{}' WHERE session_id = 's{s}' AND attribute_key = 'cart';", self.session()),
        }
    }

    /// The user and session that XA transactions change, which no other
    /// statement of the workload touches: a prepared XA transaction holds
    /// its row locks until it is resolved, and must not stall the others.
    pub fn xa_setup(&self) -> String {
        "INSERT IGNORE INTO users (user_id, username, email, password_hash) VALUES (9000, 'xa', 'xa@x', 'h');
         INSERT IGNORE INTO user_sessions (session_id, user_id, created_at, expires_at)
           VALUES ('xa-session', 9000, NOW(), '2037-01-01 00:00:00');"
            .into()
    }

    /// The statements of an XA transaction, on the XA user only.
    pub fn xa_body(&mut self) -> String {
        let word = self.rng.random_range(0..10_000);
        format!(
            "UPDATE users SET email = 'xa{word}@x' WHERE user_id = 9000;
             INSERT INTO session_data (session_id, attribute_key, attribute_value) VALUES ('xa-session', 'x{}', 'v{word}')
               ON DUPLICATE KEY UPDATE attribute_value = 'w{word}';
             INSERT INTO user_preferences (user_id, theme) VALUES (9000, 't{word}') ON DUPLICATE KEY UPDATE theme = 't{word}'",
            word % 3
        )
    }

    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }
}
