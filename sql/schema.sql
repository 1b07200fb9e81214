-- The four source tables of the session model (see the Redis model contract).
-- Valid on MySQL 8 and MariaDB 10.5+. All text is utf8mb4.

CREATE TABLE IF NOT EXISTS users (
    user_id        INT NOT NULL AUTO_INCREMENT,
    username       VARCHAR(255) NOT NULL,
    email          VARCHAR(255) NOT NULL,
    password_hash  VARCHAR(255) NOT NULL,
    created_at     TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    last_login_at  TIMESTAMP NULL DEFAULT NULL,
    PRIMARY KEY (user_id),
    UNIQUE KEY uq_users_username (username),
    UNIQUE KEY uq_users_email (email)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS user_sessions (
    session_id        VARCHAR(255) NOT NULL,
    user_id           INT NOT NULL,
    ip_address        VARCHAR(45) NULL DEFAULT NULL,
    user_agent        TEXT NULL,
    created_at        TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    expires_at        TIMESTAMP NOT NULL,
    last_activity_at  TIMESTAMP NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (session_id),
    KEY idx_user_sessions_user (user_id),
    KEY idx_user_sessions_expires (expires_at),
    CONSTRAINT fk_user_sessions_user FOREIGN KEY (user_id)
        REFERENCES users (user_id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS session_data (
    session_data_id  INT NOT NULL AUTO_INCREMENT,
    session_id       VARCHAR(255) NOT NULL,
    attribute_key    VARCHAR(255) NOT NULL,
    attribute_value  TEXT NULL,
    created_at       TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (session_data_id),
    UNIQUE KEY uq_session_data_key (session_id, attribute_key),
    CONSTRAINT fk_session_data_session FOREIGN KEY (session_id)
        REFERENCES user_sessions (session_id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS user_preferences (
    preference_id          INT NOT NULL AUTO_INCREMENT,
    user_id                INT NOT NULL,
    theme                  VARCHAR(50) NULL DEFAULT 'light',
    language               VARCHAR(10) NULL DEFAULT 'en',
    notifications_enabled  BOOLEAN NULL DEFAULT TRUE,
    updated_at             TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
    PRIMARY KEY (preference_id),
    UNIQUE KEY uq_user_preferences_user (user_id),
    CONSTRAINT fk_user_preferences_user FOREIGN KEY (user_id)
        REFERENCES users (user_id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
