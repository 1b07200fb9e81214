//! Merging a group's commands into their net effect.

use super::*;

fn hset(key: &str, fields: &[(&str, &str)]) -> Command {
    Command::HSet {
        key: key.into(),
        fields: fields
            .iter()
            .map(|(f, v)| ((*f).into(), (*v).into()))
            .collect(),
    }
}

fn hdel(key: &str, fields: &[&str]) -> Command {
    Command::HDel {
        key: key.into(),
        fields: fields.iter().map(|f| f.as_bytes().to_vec()).collect(),
    }
}

fn expire(key: &str, at: i64) -> Command {
    Command::ExpireAt {
        key: key.into(),
        at,
    }
}

#[test]
fn writes_to_one_hash_become_one_hset_and_one_expireat() {
    let out = coalesce(vec![
        hset("s1", &[("email", "a@x")]),
        expire("s1", 100),
        hset("s2", &[("theme", "dark")]),
        expire("s2", 200),
        hset("s1", &[("theme", "light"), ("email", "b@x")]),
        expire("s1", 100),
    ]);
    assert_eq!(
        out,
        vec![
            hset("s1", &[("email", "b@x"), ("theme", "light")]),
            expire("s1", 100),
            hset("s2", &[("theme", "dark")]),
            expire("s2", 200),
        ]
    );
}

#[test]
fn a_del_drops_what_came_before_it() {
    let out = coalesce(vec![
        hset("s1", &[("email", "a@x")]),
        expire("s1", 100),
        Command::Del("s1".into()),
        hset("s1", &[("user_id", "7")]),
        hdel("s1", &["user_id", "never_set"]),
        hset("s1", &[("email", "c@x")]),
        expire("s1", 100),
    ]);
    assert_eq!(
        out,
        vec![
            Command::Del("s1".into()),
            hset("s1", &[("email", "c@x")]),
            expire("s1", 100),
        ]
    );
}

#[test]
fn the_last_write_of_a_field_wins() {
    let out = coalesce(vec![
        hset("s1", &[("attr_a", "1")]),
        expire("s1", 100),
        hdel("s1", &["attr_a"]),
        hdel("s1", &["attr_b"]),
        hset("s1", &[("attr_b", "2")]),
        expire("s1", 100),
    ]);
    assert_eq!(
        out,
        vec![
            hdel("s1", &["attr_a"]),
            hset("s1", &[("attr_b", "2")]),
            expire("s1", 100)
        ]
    );
}

#[test]
fn thousands_of_fields_on_one_hash() {
    let name = |i: usize| format!("attr_{i}");
    let mut cmds = Vec::new();
    for i in 0..3_000 {
        cmds.push(hset("s1", &[(&name(i), "v")]));
        cmds.push(expire("s1", 100));
    }
    cmds.push(hdel(
        "s1",
        &(0..3_000)
            .step_by(2)
            .map(|i| &*name(i).leak())
            .collect::<Vec<_>>(),
    ));
    cmds.push(hset("s1", &[(&name(0), "again")]));
    cmds.push(expire("s1", 100));
    let out = coalesce(cmds);
    let [Command::HDel {
        fields: removed, ..
    }, Command::HSet { fields: set, .. }, Command::ExpireAt { .. }] = &out[..]
    else {
        panic!("{out:?}")
    };
    assert_eq!(removed.len(), 1_499);
    assert_eq!(set.len(), 1_501);
    assert_eq!(set[0], (name(0).into_bytes(), b"again".to_vec()));
}

#[test]
fn a_key_whose_expiry_changes_is_passed_through() {
    let cmds = vec![
        hset("s1", &[("a", "1")]),
        expire("s1", 100),
        hset("s1", &[("b", "2")]),
        expire("s1", 300),
    ];
    assert_eq!(coalesce(cmds.clone()), cmds);
}

#[test]
fn keys_passed_through_and_merged_keys_mix() {
    let out = coalesce(vec![
        hset("s1", &[("a", "1")]),
        expire("s1", 100),
        hset("s2", &[("a", "1")]),
        expire("s2", 100),
        expire("s1", 300),
        hset("s2", &[("a", "2"), ("b", "2")]),
        expire("s2", 100),
        hset("s3", &[("c", "3"), ("c", "4")]),
        hdel("s3", &["d"]),
        expire("s3", 100),
    ]);
    assert_eq!(
        out,
        vec![
            hset("s2", &[("a", "2"), ("b", "2")]),
            expire("s2", 100),
            hdel("s3", &["d"]),
            hset("s3", &[("c", "4")]),
            expire("s3", 100),
            hset("s1", &[("a", "1")]),
            expire("s1", 100),
            expire("s1", 300),
        ]
    );
}

#[test]
fn an_index_rewrite_keeps_its_shape() {
    let cmds = vec![
        Command::Del("u:1".into()),
        Command::ZAdd {
            key: "u:1".into(),
            members: vec![(100, "s1".into()), (200, "s2".into())],
        },
        expire("u:1", 200),
    ];
    assert_eq!(coalesce(cmds.clone()), cmds);
}
