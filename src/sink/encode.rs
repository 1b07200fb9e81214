//! Model commands to a Redis pipeline.

use redis::Pipeline;

use crate::model::Command;

/// One pipeline for a batch of commands, replies ignored; `atomic` wraps it
/// in `MULTI`/`EXEC`.
pub fn pipeline(commands: &[Command], atomic: bool) -> Pipeline {
    let mut pipe = redis::pipe();
    if atomic {
        pipe.atomic();
    }
    for command in commands {
        match command {
            Command::Del(key) => {
                pipe.del(key);
            }
            Command::HSet { key, fields } => {
                if fields.is_empty() {
                    continue;
                }
                let cmd = pipe.cmd("HSET").arg(key);
                for (field, value) in fields {
                    cmd.arg(field).arg(value);
                }
            }
            Command::HDel { key, fields } => {
                if fields.is_empty() {
                    continue;
                }
                pipe.cmd("HDEL").arg(key).arg(fields);
            }
            Command::ExpireAt { key, at } => {
                pipe.cmd("EXPIREAT").arg(key).arg(*at);
            }
            Command::ZAdd { key, members } => {
                if members.is_empty() {
                    continue;
                }
                let cmd = pipe.cmd("ZADD").arg(key);
                for (score, member) in members {
                    cmd.arg(*score).arg(member);
                }
            }
            Command::Set { key, value } => {
                pipe.cmd("SET").arg(key).arg(value);
            }
        }
        pipe.ignore();
    }
    pipe
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_commands_as_resp() {
        let cmds = [
            Command::HSet {
                key: b"k".to_vec(),
                fields: vec![(b"f".to_vec(), b"v".to_vec())],
            },
            Command::ExpireAt {
                key: b"k".to_vec(),
                at: 42,
            },
        ];
        let packed = String::from_utf8(pipeline(&cmds, true).get_packed_pipeline()).unwrap();
        assert_eq!(
            packed,
            "*1\r\n$5\r\nMULTI\r\n\
             *4\r\n$4\r\nHSET\r\n$1\r\nk\r\n$1\r\nf\r\n$1\r\nv\r\n\
             *3\r\n$8\r\nEXPIREAT\r\n$1\r\nk\r\n$2\r\n42\r\n\
             *1\r\n$4\r\nEXEC\r\n"
        );
    }
}
