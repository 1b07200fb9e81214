//! Model commands to a Redis pipeline.

use redis::{Cmd, Pipeline};

use crate::model::Command;

/// One pipeline for a batch of commands; `atomic` wraps it in
/// `MULTI`/`EXEC`. Each command's buffers are sized before its arguments are
/// copied in, so no buffer grows while the batch is encoded. No command is
/// marked `ignore()`: the client would keep every ignored index in a hash
/// set, hashed again for every reply, while a caller reads at most the last
/// reply. Errors come back either way.
pub fn pipeline<'a>(
    commands: impl ExactSizeIterator<Item = &'a Command>,
    atomic: bool,
) -> Pipeline {
    let mut pipe = Pipeline::with_capacity(commands.len());
    if atomic {
        pipe.atomic();
    }
    for command in commands {
        if let Some(cmd) = encode(command) {
            pipe.add_command(cmd);
        }
    }
    pipe
}

/// `commands` as one `MULTI`/`EXEC` that ends with `EXISTS marker`: whether
/// the namespace's marker key exists, seen from inside the transaction that
/// writes (see [`super::RedisSink::exec_checked`]).
pub fn checked_transaction<'a>(
    commands: impl ExactSizeIterator<Item = &'a Command>,
    marker: &[u8],
) -> Pipeline {
    let mut pipe = pipeline(commands, true);
    pipe.cmd("EXISTS").arg(marker);
    pipe
}

/// The Redis command of one model command; `None` for one with nothing to
/// write (an `HSET`, `HDEL` or `ZADD` without fields).
fn encode(command: &Command) -> Option<Cmd> {
    let cmd = match command {
        Command::Del(key) => sized("DEL", 1, key.len()).arg(key).take(),
        Command::HSet { key, fields } => {
            if fields.is_empty() {
                return None;
            }
            let bytes: usize = fields.iter().map(|(f, v)| f.len() + v.len()).sum();
            let mut cmd = sized("HSET", 1 + 2 * fields.len(), key.len() + bytes);
            cmd.arg(key);
            for (field, value) in fields {
                cmd.arg(field).arg(value);
            }
            cmd
        }
        Command::HDel { key, fields } => {
            if fields.is_empty() {
                return None;
            }
            let bytes: usize = fields.iter().map(Vec::len).sum();
            let mut cmd = sized("HDEL", 1 + fields.len(), key.len() + bytes);
            cmd.arg(key);
            for field in fields {
                cmd.arg(field);
            }
            cmd
        }
        Command::ExpireAt { key, at } => sized("EXPIREAT", 2, key.len() + NUMBER)
            .arg(key)
            .arg(*at)
            .take(),
        Command::ZAdd { key, members } => {
            if members.is_empty() {
                return None;
            }
            let bytes: usize = members.iter().map(|(_, m)| NUMBER + m.len()).sum();
            let mut cmd = sized("ZADD", 1 + 2 * members.len(), key.len() + bytes);
            cmd.arg(key);
            for (score, member) in members {
                cmd.arg(*score).arg(member);
            }
            cmd
        }
        Command::Set { key, value } => sized("SET", 2, key.len() + value.len())
            .arg(key)
            .arg(value)
            .take(),
    };
    Some(cmd)
}

/// The most bytes a decimal `i64` takes.
const NUMBER: usize = 20;

/// A command named `name`, with room for `args` more arguments of `bytes`
/// bytes in all.
fn sized(name: &str, args: usize, bytes: usize) -> Cmd {
    let mut cmd = Cmd::with_capacity(1 + args, name.len() + bytes);
    cmd.arg(name);
    cmd
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
        let packed = String::from_utf8(pipeline(cmds.iter(), true).get_packed_pipeline()).unwrap();
        assert_eq!(
            packed,
            "*1\r\n$5\r\nMULTI\r\n\
             *4\r\n$4\r\nHSET\r\n$1\r\nk\r\n$1\r\nf\r\n$1\r\nv\r\n\
             *3\r\n$8\r\nEXPIREAT\r\n$1\r\nk\r\n$2\r\n42\r\n\
             *1\r\n$4\r\nEXEC\r\n"
        );
    }

    #[test]
    fn encodes_every_command_and_skips_empty_ones() {
        let cmds = [
            Command::Del(b"d".to_vec()),
            Command::HSet {
                key: b"empty".to_vec(),
                fields: vec![],
            },
            Command::HDel {
                key: b"h".to_vec(),
                fields: vec![b"a".to_vec(), b"b".to_vec()],
            },
            Command::ZAdd {
                key: b"z".to_vec(),
                members: vec![(-7, b"m".to_vec())],
            },
            Command::Set {
                key: b"s".to_vec(),
                value: b"v".to_vec(),
            },
        ];
        let packed = String::from_utf8(pipeline(cmds.iter(), false).get_packed_pipeline()).unwrap();
        assert_eq!(
            packed,
            "*2\r\n$3\r\nDEL\r\n$1\r\nd\r\n\
             *4\r\n$4\r\nHDEL\r\n$1\r\nh\r\n$1\r\na\r\n$1\r\nb\r\n\
             *4\r\n$4\r\nZADD\r\n$1\r\nz\r\n$2\r\n-7\r\n$1\r\nm\r\n\
             *3\r\n$3\r\nSET\r\n$1\r\ns\r\n$1\r\nv\r\n"
        );
    }
}
