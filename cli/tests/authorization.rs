//! Who may do what over the control socket (DESIGN.md §7), with a second real user: the peer
//! credentials decide, and a private socket keeps other users out altogether.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;

mod support;
use spfs_testkit::require_fuse;
use support::*;

#[test]
fn a_second_user_cannot_register_remove_or_list_the_first_users_runtimes() {
    // Mounting and switching users both need root: skipped (or, in CI, failed) without it.
    if !require_fuse() {
        return;
    }
    let env = Env::new();
    let _service = env.service();
    // Open the socket to every user, as an administrator sharing one service would: from here
    // on only the peer credentials stand between the two users.
    for (path, mode) in [
        (env.path().to_owned(), 0o755),
        (env.path().join("run"), 0o755),
        (env.socket(), 0o666),
        (env.path().join("layer"), 0o755),
    ] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let as_other = |args: &[&str]| {
        env.cmd(args)
            .uid(OTHER_UID)
            .gid(OTHER_UID)
            .output()
            .expect("run spfs-fuse as the second user")
    };
    let layer = env.layer();
    let mine = Sleeper::as_uid(0);
    let also_mine = Sleeper::as_uid(0);
    let theirs = Sleeper::as_uid(OTHER_UID);

    ok(&env.run(&["mount", "--root-process", &mine.pid(), &layer]));

    let out = as_other(&["mount", "--root-process", &also_mine.pid(), &layer]);
    assert!(!out.status.success(), "registered another user's process");
    let err = stderr(&out);
    assert!(
        err.contains("uid 65534") && err.contains("uid 0") && err.contains(&also_mine.pid()),
        "{err}"
    );

    ok(&as_other(&[
        "mount",
        "--root-process",
        &theirs.pid(),
        &layer,
    ]));

    let seen_by_other: serde_json::Value =
        serde_json::from_str(&ok(&as_other(&["status", "--json"]))).unwrap();
    assert_eq!(root_pids(&seen_by_other), [theirs.pid()], "{seen_by_other}");
    let mut both = vec![mine.pid(), theirs.pid()];
    both.sort();
    assert_eq!(root_pids(&status_json(&env)), both);

    let out = as_other(&["unmount", "--root-process", &mine.pid()]);
    assert!(!out.status.success(), "removed another user's runtime");
    let err = stderr(&out);
    assert!(err.contains("uid 65534") && err.contains("uid 0"), "{err}");
    assert_eq!(root_pids(&status_json(&env)), both);

    ok(&as_other(&["unmount", "--root-process", &theirs.pid()]));
    ok(&env.run(&["unmount", "--root-process", &mine.pid()]));
    assert!(root_pids(&status_json(&env)).is_empty());
}

#[test]
fn a_second_user_cannot_reach_a_private_socket() {
    // Mounting and switching users both need root: skipped (or, in CI, failed) without it.
    if !require_fuse() {
        return;
    }
    let env = Env::new();
    let _service = env.service();
    std::fs::set_permissions(env.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = env
        .cmd(&["status"])
        .uid(OTHER_UID)
        .gid(OTHER_UID)
        .output()
        .expect("run spfs-fuse as the second user");
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("ermission denied"), "{err}");
}
